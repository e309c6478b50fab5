"""Vector backends side by side at several sizes: FAISS files vs Milvus (milvus-lite, and a Milvus server when one
is reachable), as ratios to FAISS measured in the same run; recognition over each; Ray vs local encoding.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/backends.py [--n 100000,1000000] [--dim 384] [--queries 100] [--k 10]
        [--backends faiss,milvus-lite] [--server milvus://HOST:PORT ...] [--no-recognition]
        [--no-encoding] [--encode-texts 5000] [--ray-actors N] [--ray-cpus 1] [--no-append]

The full run (roughly half an hour on 2 quiet cores, most of it Milvus upserting 1M rows four times, at ~5,000
rows/s, and answering 100 single queries over 1M rows; stop the server afterwards, and delete its folder):

    .venv/bin/milvus-lite server --data-dir /tmp/bench-milvus --host 127.0.0.1 --port 19530 &  # or a Milvus server
    HF_HUB_OFFLINE=1 .venv/bin/python bench/backends.py --n 100000,1000000 --server milvus://127.0.0.1:19530

Sizes: ``--n`` is a comma-separated list of row counts (default 100,000 and 1,000,000); every size runs every
backend, one size after the other, and its rows are printed and appended as soon as the size is done. Per size:
``n`` random unit float32 vectors of dimension ``--dim`` (drawn in chunks, so one copy of the data is held) under
sparse int64 keys, each with an int64 ``category`` (100 categories) and a short string ``label``; ``--queries``
random unit queries. The exact top ``--k`` of each query is computed first by NumPy, brute force over all rows in
float64 (chunked). Then per backend, in this order: upsert everything (Milvus in batches of 5,000 rows, with a
progress bar), flush, a batched search of all queries for the top ``--k`` (a warm-up call first, then the median
of 3), the same queries one at a time (p50 latency), and the batched search filtered to 10 of the 100 categories
(``category in [...]``). "recall@k %" is the share of the exact top-k keys that the backend's batched search
returned (FLAT is exact, so ~100 %: float32 near-ties at the k-th place aside).

Ratios: each row also gives "upsert ×FAISS" (its upsert rows/s ÷ the FAISS row's of the same size) and
"queries/s ×FAISS" (its batched queries/s ÷ FAISS's); the FAISS row reads 1.0 (empty when FAISS is not run).
Backends: ``faiss`` (a Flat index and its fields file in a temporary folder), ``milvus-lite`` (embedded, FLAT, in
a temporary folder: milvus-lite is a pure-Python engine on faiss-cpu, so its figures are those of one process on
this machine) and, with ``--server milvus://HOST:PORT`` (repeatable, or comma-separated), ``milvus-server``: a
Milvus server reached over gRPC (``MilvusBackend`` with ``http://HOST:PORT``), in a collection of this run's own
(``unibind_bench_<pid>_<time>_...``) that is dropped afterwards. A server that cannot be reached is skipped with
one line; the other rows still run. ``milvus-lite server --data-dir DIR --host 127.0.0.1 --port P`` (a console
script of milvus-lite, in ``.venv/bin``; without --host it listens on every interface) is one such server on
loopback: the same engine as milvus-lite, but across a socket, as replicas share it. A Milvus server caps one
search at 16,384 hits (``MilvusBackend.max_k``); the searches here ask for ``--k``, and recognition's backend
engine answers its rare larger fetches from its own table.
Rows go to BENCHMARKS.md, section "vector backends at scale (bench/backends.py)", with the 1-minute load average
when the size started (another job on the cores makes FAISS's OpenMP threads stall), unless --no-append.

Recognition, per size (unless --no-recognition): ``n`` // 50 categories of 50 centre members whose members share
their category's direction (cosine ~0.67, as bench/recognize.py), in the recognizer's default space and rule
(centred, the mean of the 3 best members), ``--queries`` queries near members, k = 5: the FAISS engine (its own
in-memory index), and the exact backend engine (retrieval/recognition/backend_engine.py) on each backend (its
"populate s" includes upserting the members). Queries/s is the median of 3 batched calls after a warm-up;
"queries/s ×FAISS engine" divides it by the FAISS engine's; "equal" says whether every answer (labels and scores)
is identical to the FAISS engine's. Section "recognition over vector backends at scale (bench/backends.py)".

Encoding (unless --no-encoding): ``--encode-texts`` synthetic sentences (default 5,000) encoded by the real MiniLM
encoder (spec ``minilm``, on the CPU) in this process, then by ``RayEncoder`` on a local Ray (``--ray-actors``
actors, default one per core, each with ``--ray-cpus`` CPUs and as many torch threads; the local encoder uses
torch's default threads). "local s" is one ``encode_text`` call after the model is loaded and warmed up; "ray s" is
one Ray Data job (start the actors, load a model in each, encode, gather by id), after ``ray.init`` ("ray init s",
not in the ratio); "ratio ray÷local" is ray s ÷ local s. The two sets of vectors must agree within 1e-5 (max
absolute difference, by input id). Skipped with one line when Ray is not installed (``pip install 'unibind[ray]'``).
Section "encoding: Ray vs local (bench/backends.py)". MiniLM must be in the Hugging Face cache; HF_HUB_OFFLINE=1
spares each actor the hub probe.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repo root first

from bench.recognize import category_members, timed, unit  # noqa: E402 (the same data and timer as recognize.py)
from bench.report import append_rows, command_line, machine, median, now, text_table  # noqa: E402

log = logging.getLogger("bench.backends")

SECTION = "vector backends at scale (bench/backends.py)"
CATEGORIES, FILTER_CATEGORIES = 100, 10
DATA_CHUNK = 100_000  # rows drawn at a time
EXACT_CHUNK = 32_768  # rows per float64 product of the exact top-k
PROGRESS_CHUNK = 50_000  # rows per upsert call under the progress bar (a multiple of Milvus's 5,000-row batches)
CONNECT_TIMEOUT_S = 5.0
COLUMNS = ("backend", "index", "n", "d", "upsert s", "upsert rows/s", "upsert ×FAISS", "flush s", "B", "k",
           "batch ms", "queries/s", "queries/s ×FAISS", "single p50 ms", "filtered queries/s", "recall@k %")
MD_COLUMNS = ("date", "machine", "load 1 min", *COLUMNS, "command")
RECOGNITION_SECTION = "recognition over vector backends at scale (bench/backends.py)"
RECOGNITION_COLUMNS = ("engine", "categories", "members", "d", "B", "k", "top_m", "populate s", "batch ms",
                       "queries/s", "queries/s ×FAISS engine", "equal to the FAISS engine")
RECOGNITION_MD_COLUMNS = ("date", "machine", "load 1 min", *RECOGNITION_COLUMNS, "command")
ENCODING_SECTION = "encoding: Ray vs local (bench/backends.py)"
ENCODING_COLUMNS = ("encoder", "texts", "batch", "local s", "local texts/s", "ray actors", "CPUs per actor",
                    "ray init s", "ray s", "ray texts/s", "ratio ray÷local", "max abs diff", "within 1e-5")
ENCODING_MD_COLUMNS = ("date", "machine", "load 1 min", *ENCODING_COLUMNS, "command")
ENCODING_TOL = 1e-5
KINDS = ("faiss", "milvus-lite")


@dataclass(frozen=True)
class Target:
    """One backend to measure: ``kind`` (faiss, milvus-lite, milvus-server), the index column, a server's URI."""

    kind: str
    index: str
    uri: str | None = None

    @property
    def server(self) -> bool:
        return self.uri is not None


def sizes(text: str) -> list[int]:
    """``--n``: comma-separated row counts (``100000,1000000``; underscores allowed)."""
    try:
        out = [int(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--n {text!r}: give comma-separated row counts, e.g. 100000,1000000") from e
    if not out or min(out) < 100:
        raise argparse.ArgumentTypeError(f"--n {text!r}: every size must be at least 100")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=sizes, default=[100_000, 1_000_000],
                   help="comma-separated sizes, rows (default 100000,1000000)")
    p.add_argument("--dim", type=int, default=384, help="vector dimension (default 384)")
    p.add_argument("--queries", type=int, default=100, help="queries (default 100)")
    p.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    p.add_argument("--backends", default="faiss,milvus-lite",
                   help="comma-separated: faiss, milvus-lite (or milvus) (default both)")
    p.add_argument("--server", action="append", default=[], metavar="milvus://HOST:PORT",
                   help="also measure this Milvus server (repeatable or comma-separated; skipped when unreachable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-recognition", action="store_true", help="skip the recognition part")
    p.add_argument("--no-encoding", action="store_true", help="skip Ray vs local encoding")
    p.add_argument("--encode-texts", type=int, default=5000, help="texts for Ray vs local encoding (default 5000)")
    p.add_argument("--encode-batch", type=int, default=256, help="encoder batch, and rows per Ray batch (default 256)")
    p.add_argument("--ray-actors", type=int, default=os.cpu_count() or 1,
                   help="Ray encoder actors (default: one per core)")
    p.add_argument("--ray-cpus", type=float, default=1.0, help="CPUs (and torch threads) per Ray actor (default 1)")
    p.add_argument("--no-append", action="store_true", help="print only; do not append to BENCHMARKS.md")
    args = p.parse_args(argv)
    if args.queries < 1 or args.k < 1 or args.dim < 1 or args.encode_texts < 1:
        p.error("--queries, --k, --dim and --encode-texts must be >= 1")
    if args.k > min(args.n):
        p.error(f"--k {args.k} is more than the smallest size {min(args.n)}")
    return args


def targets(args: argparse.Namespace) -> list[Target]:
    """The backends to measure, in order: --backends, then each reachable --server."""
    from unibind.schema.errors import InvalidInput
    from unibind.schema.settings import parse_vectors_spec

    out = []
    for kind in (b.strip() for b in args.backends.split(",") if b.strip()):
        if kind == "faiss":
            out.append(Target("faiss", "Flat"))
        elif kind in ("milvus", "milvus-lite"):
            out.append(Target("milvus-lite", "FLAT (milvus-lite)"))
        else:
            raise SystemExit(f"unknown backend {kind!r}; choose from {', '.join(KINDS)} (servers: --server)")
    for spec in (s.strip() for given in args.server for s in given.split(",") if s.strip()):
        try:
            parsed = parse_vectors_spec(spec, "--server")
        except InvalidInput as e:
            raise SystemExit(str(e)) from e
        if parsed.kind != "milvus" or parsed.uri is None:
            raise SystemExit(f"--server {spec!r}: give milvus://HOST:PORT")
        where = parsed.uri.removeprefix("http://")
        reason = unreachable(parsed.uri)
        if reason:
            log.warning("Milvus server %s cannot be reached (%s): skipping its rows", spec, reason)
            continue
        out.append(Target("milvus-server", f"FLAT (server {where})", parsed.uri))
    return out


def unreachable(uri: str) -> str | None:
    """Why nothing accepts a TCP connection at ``http://host:port`` (None: something does)."""
    u = urlparse(uri)
    try:
        with socket.create_connection((u.hostname or "127.0.0.1", u.port or 19530), timeout=CONNECT_TIMEOUT_S):
            return None
    except OSError as e:
        return str(e) or type(e).__name__


def collection_name(what: str, n: int) -> str:
    """A collection of this run's own on a server: ``unibind_bench_<pid>_<unix time>_<what>_<n>``."""
    return f"unibind_bench_{os.getpid()}_{int(time.time())}_{what}_{n}"


def with_progress(backend: Any, desc: str) -> Any:
    """``backend`` whose ``upsert`` goes in chunks of PROGRESS_CHUNK rows under a progress bar (a Milvus backend
    upserts 5,000 rows per call anyway, so the calls to Milvus are the same)."""
    from tqdm import tqdm

    whole = backend.upsert

    def upsert(ids: np.ndarray, vectors: np.ndarray, fields: Mapping[str, np.ndarray] | None = None) -> None:
        n = len(ids)
        if n <= PROGRESS_CHUNK:
            whole(ids, vectors, fields)
            return
        with tqdm(total=n, desc=desc, unit=" rows", unit_scale=True, mininterval=2.0, file=sys.stderr) as bar:
            for s in range(0, n, PROGRESS_CHUNK):
                part = slice(s, s + PROGRESS_CHUNK)
                whole(ids[part], vectors[part], None if fields is None else {k: v[part] for k, v in fields.items()})
                bar.update(len(ids[part]))

    backend.upsert = upsert  # the instance's attribute: BackendEngine's populate goes through it too
    return backend


def open_backend(target: Target, folder: Path, name: str, dim: int, fields: dict[str, str]) -> Any:
    """A new, empty backend of ``target``'s kind: files or a milvus-lite folder in ``folder``, or a new collection
    ``name`` on the server."""
    from unibind.indexer.index.backend import FaissBackend
    from unibind.indexer.runtime.device import Device

    if target.kind == "faiss":
        return FaissBackend(dim, fields=fields, path=folder / f"{name}.faiss", device=Device())
    from unibind.indexer.index.milvus_backend import MilvusBackend

    uri = target.uri if target.uri is not None else str(folder / "lite")
    return with_progress(MilvusBackend(uri, name, dim, fields=fields), f"{target.kind} upsert")


def release(target: Target, backend: Any) -> None:
    """Close ``backend``; on a server, drop its collection first (a failure to drop is logged, not raised)."""
    try:
        if target.server and getattr(backend, "client", None) is not None:
            backend.drop()
            log.info("%s: dropped collection %s", target.kind, backend.collection)
    except Exception as e:  # noqa: BLE001 - the rows measured so far stay valid
        log.warning("%s: could not drop collection %s: %s", target.kind, getattr(backend, "collection", "?"), e)
    finally:
        backend.close()


def make_data(n: int, d: int, queries: int, seed: int) -> dict[str, Any]:
    """Size ``n``'s rows and queries (see the module docstring), drawn in chunks of DATA_CHUNK rows."""
    rng = np.random.default_rng((seed, n))  # each size's data does not depend on the other sizes asked for
    ids = rng.choice(10 * n, size=n, replace=False).astype(np.int64)
    vectors = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, DATA_CHUNK):
        x = rng.standard_normal((min(DATA_CHUNK, n - s), d), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        vectors[s : s + len(x)] = x
    fields = {"category": rng.integers(0, CATEGORIES, n),
              "label": np.array([f"item {i % 1000}" for i in range(n)])}
    q = unit(rng, queries, d)
    return {"ids": ids, "vectors": vectors, "fields": fields, "queries": q}


def exact_top_k(vectors: np.ndarray, keys: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """[B, k] keys of each query's exact top ``k`` by inner product, best first: float64 products over chunks of
    EXACT_CHUNK rows, the best kept across chunks."""
    q = queries.astype(np.float64)
    B = q.shape[0]
    best_s = np.full((B, 0), -np.inf)
    best_r = np.empty((B, 0), dtype=np.int64)
    for s in range(0, len(vectors), EXACT_CHUNK):
        part = q @ vectors[s : s + EXACT_CHUNK].astype(np.float64).T  # [B, c]
        kk = min(k, part.shape[1])
        top = np.argpartition(-part, kk - 1, axis=1)[:, :kk]  # [B, kk]
        both_s = np.concatenate([best_s, np.take_along_axis(part, top, axis=1)], axis=1)
        both_r = np.concatenate([best_r, top + s], axis=1)
        order = np.argsort(-both_s, axis=1, kind="stable")[:, :k]
        best_s, best_r = np.take_along_axis(both_s, order, axis=1), np.take_along_axis(both_r, order, axis=1)
    return keys[best_r]


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    """Percent of the exact top-k keys among the ``found`` keys, averaged over the queries."""
    k = exact.shape[1]
    return 100.0 * float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found.tolist(), exact.tolist())]))


def measure(kind: str, backend: Any, data: dict[str, Any], k: int) -> tuple[dict[str, float], np.ndarray]:
    """The timings of one backend (see the module docstring) and its batched top-k keys."""
    from unibind.indexer.index.backend import Filter

    ids, queries = data["ids"], data["queries"]
    upsert = timed(lambda: backend.upsert(ids, data["vectors"], data["fields"]))
    flush = timed(backend.flush)
    log.info("%s: upserted %d rows in %.1fs (%.0f rows/s), flushed in %.2fs", kind, len(ids), upsert,
             len(ids) / upsert, flush)
    _, top = backend.search(queries, k)  # warm-up
    batch = median([timed(lambda: backend.search(queries, k)) for _ in range(3)])
    single = median([timed(lambda: backend.search(q[None], k)) for q in queries])
    allowed = Filter.isin("category", range(FILTER_CATEGORIES))
    backend.search(queries, k, allowed)
    filtered = median([timed(lambda: backend.search(queries, k, allowed)) for _ in range(3)])
    log.info("%s: %.0f queries/s batched, p50 %.1f ms single, %.0f queries/s filtered", kind,
             len(queries) / batch, 1e3 * single, len(queries) / filtered)
    return {"upsert": upsert, "flush": flush, "batch": batch, "single": single, "filtered": filtered}, top


def ratio(value: float, reference: float | None) -> float | str:
    """``value`` ÷ ``reference``, to 4 significant digits; "" without a reference."""
    return "" if reference is None else float(f"{value / reference:.4g}")


def backends_at(n: int, args: argparse.Namespace, plan: list[Target]) -> list[list[object]]:
    """The rows of size ``n``: every backend of ``plan`` on the same data, with ratios to the FAISS row."""
    t = time.perf_counter()
    data = make_data(n, args.dim, args.queries, args.seed)
    log.info("n=%d: data drawn in %.1fs", n, time.perf_counter() - t)
    t = time.perf_counter()
    exact = exact_top_k(data["vectors"], data["ids"], data["queries"], args.k)
    log.info("n=%d: exact top-%d of %d queries (NumPy, float64) in %.1fs", n, args.k, args.queries,
             time.perf_counter() - t)
    types = {"category": "int64", "label": "str"}
    measured: list[tuple[Target, dict[str, float], float]] = []
    with tempfile.TemporaryDirectory(prefix="unibind-backends-") as folder:
        for target in list(plan):
            log.info("n=%d: %s (%s)", n, target.kind, target.index)
            try:
                backend = open_backend(target, Path(folder), collection_name("rows", n) if target.server else "rows",
                                       args.dim, types)
            except Exception as e:
                if not target.server:
                    raise
                log.warning("%s at %s: cannot open a collection (%s): skipping it from now on", target.kind,
                            target.uri, e)
                plan.remove(target)
                continue
            try:
                times, top = measure(target.kind, backend, data, args.k)
            except Exception as e:
                if not target.server:
                    raise
                log.warning("%s at %s failed (%s): skipping its row", target.kind, target.uri, e)
                continue
            finally:
                release(target, backend)
            measured.append((target, times, recall(top, exact)))
    faiss = next((tm for tg, tm, _ in measured if tg.kind == "faiss"), None)
    faiss_rate = n / faiss["upsert"] if faiss else None
    faiss_qps = args.queries / faiss["batch"] if faiss else None
    rows: list[list[object]] = []
    for target, tm, rec in measured:
        rate, qps = n / tm["upsert"], args.queries / tm["batch"]
        rows.append([target.kind, target.index, n, args.dim, round(tm["upsert"], 2), round(rate),
                     ratio(rate, faiss_rate), round(tm["flush"], 2), args.queries, args.k, round(1e3 * tm["batch"], 1),
                     round(qps), ratio(qps, faiss_qps), round(1e3 * tm["single"], 2),
                     round(args.queries / tm["filtered"]), round(rec, 1)])
    return rows


def recognition_at(n: int, args: argparse.Namespace, plan: list[Target]) -> list[list[object]]:
    """The FAISS engine and the backend engine on each backend, on ``n`` // 50 clustered centres (see the module
    docstring)."""
    from unibind.indexer.runtime.device import Device
    from unibind.indexer.runtime.vectors import normalize
    from unibind.retrieval.recognition.backend_engine import BackendEngine
    from unibind.retrieval.recognition.engine import DEFAULT_TOP_M, CentreTable
    from unibind.retrieval.recognition.faiss_engine import FaissEngine

    K, k = 50, 5
    C = max(2, n // K)
    t = time.perf_counter()
    rng = np.random.default_rng((args.seed + 1, n))
    members = category_members(rng, C, K, args.dim, 0.67)
    queries = normalize(members[rng.integers(0, C * K, args.queries)] + unit(rng, args.queries, args.dim))
    owner = np.repeat(np.arange(C, dtype=np.int64), K)
    table = CentreTable([f"category {c}" for c in range(C)], members, owner).centred()
    del members
    log.info("n=%d: %d categories x %d members drawn in %.1fs", n, C, K, time.perf_counter() - t)
    fields = {"category": "int64"}
    out: list[list[object]] = []
    reference, reference_qps = None, None
    with tempfile.TemporaryDirectory(prefix="unibind-backends-rec-") as folder:
        engines: list[tuple[str, Target | None, Callable[[], Any]]] = [
            ("faiss engine", None, lambda: FaissEngine(table, Device(), top_m=DEFAULT_TOP_M))]
        for target in plan:
            name = {"faiss": "backend engine, faiss backend", "milvus-lite": "backend engine, milvus-lite FLAT"}.get(
                target.kind, f"backend engine, {target.index.replace('FLAT (server ', 'Milvus server ').rstrip(')')}")

            def build(target: Target = target) -> Any:
                backend = open_backend(target, Path(folder),
                                       collection_name("centres", n) if target.server else "centres", args.dim, fields)
                try:
                    return BackendEngine(table, Device(), backend, top_m=DEFAULT_TOP_M)
                except BaseException:
                    release(target, backend)
                    raise

            engines.append((name, target, build))
        for name, target, build in engines:
            log.info("n=%d: %s", n, name)
            engine = None
            try:
                t = time.perf_counter()
                engine = build()
                populate_s = time.perf_counter() - t
                engine.recognize(queries, k)  # warm-up
                times = [timed(lambda: engine.recognize(queries, k)) for _ in range(3)]
                got = engine.recognize(queries, k)
            except Exception as e:
                if target is None or not target.server:
                    raise
                log.warning("%s at %s failed (%s): skipping its row", name, target.uri, e)
                continue
            finally:
                backend = getattr(engine, "backend", None)
                if backend is not None and target is not None:
                    release(target, backend)
            qps = args.queries / median(times)
            if reference is None:
                reference, reference_qps = got, qps
            log.info("%s: %.1f queries/s, populated in %.1fs", name, qps, populate_s)
            out.append([name, C, C * K, args.dim, args.queries, k, DEFAULT_TOP_M, round(populate_s, 2),
                        round(1e3 * median(times), 1), round(qps), ratio(qps, reference_qps),
                        "yes" if got == reference else "NO"])
            engine = None  # the members go before the next engine is built
    return out


def sentences(n: int) -> list[str]:
    """``n`` distinct synthetic sentences of varied length (so padding and batching differ between the paths)."""
    adjectives = ("small", "large", "striped", "spotted", "green", "pale", "noisy", "quiet", "young", "old")
    things = ("fish", "bird", "beetle", "frog", "fox", "owl", "moth", "lizard", "crab", "heron", "otter", "snail")
    places = ("by a river", "in tall grass", "on a branch", "under a stone", "near the shore", "in the reeds")
    return [f"a {adjectives[i % 10]} {things[(i // 10) % 12]} {places[(i // 120) % 6]}"
            f"{' with long legs and a short tail' * (i % 4)} (observation {i})" for i in range(n)]


def encoding(args: argparse.Namespace) -> list[list[object]]:
    """MiniLM on the same texts, locally and on a local Ray (see the module docstring); [] when Ray is missing."""
    try:
        import ray
        import ray.data  # noqa: F401 (RayEncoder needs the Data library)
    except ImportError as e:
        log.warning("Ray vs local encoding skipped: Ray is not importable (%s); pip install 'unibind[ray]'", e)
        return []
    from unibind.indexer.encoders.factory import build_encoder
    from unibind.indexer.encoders.ray_encoder import RayConfig, RayEncoder, ensure_ray
    from unibind.indexer.runtime.device import select_device
    from unibind.schema.errors import Unavailable

    texts = sentences(args.encode_texts)
    t = time.perf_counter()
    encoder = build_encoder("minilm", select_device("cpu"))
    log.info("encoding: %s loaded in %.1fs", encoder.spec, time.perf_counter() - t)
    encoder.encode_text(texts[:64], batch_size=args.encode_batch, progress=False)  # warm-up
    t = time.perf_counter()
    local = encoder.encode_text(texts, batch_size=args.encode_batch, progress=False)
    local_s = time.perf_counter() - t
    log.info("encoding: %d texts locally in %.1fs", len(texts), local_s)
    config = RayConfig(concurrency=args.ray_actors, num_cpus=args.ray_cpus, batch_size=args.encode_batch,
                       object_store_mb=512)
    started = not ray.is_initialized()
    try:
        t = time.perf_counter()
        for attempt in (1, 2):  # a loaded machine can time a local Ray's start out once
            try:
                ensure_ray(config)
                break
            except Unavailable as e:
                if ray.is_initialized():
                    ray.shutdown()
                if attempt == 2:
                    log.error("Ray vs local encoding skipped: %s", e)
                    return []
                log.warning("%s; trying once more", e)
                t = time.perf_counter()
        init_s = time.perf_counter() - t
        t = time.perf_counter()
        remote = RayEncoder(encoder, config).encode_text(texts, batch_size=args.encode_batch)
        ray_s = time.perf_counter() - t
    finally:
        if started and ray.is_initialized():
            ray.shutdown()
    diff = float(np.abs(local - remote).max())
    log.info("encoding: %d texts on Ray in %.1fs (ray.init %.1fs); max abs diff %.1e", len(texts), ray_s, init_s, diff)
    if diff > ENCODING_TOL:
        log.error("encoding: Ray's vectors differ from the local ones by %.1e (> %g)", diff, ENCODING_TOL)
    batch = min(args.encode_batch, len(texts))
    actors = min(args.ray_actors, -(-len(texts) // batch), 1000)  # RayEncoder starts no actor that would get nothing
    return [[str(encoder.spec), len(texts), args.encode_batch, round(local_s, 2), round(len(texts) / local_s),
             actors, args.ray_cpus, round(init_s, 2), round(ray_s, 2), round(len(texts) / ray_s),
             float(f"{ray_s / local_s:.4g}"), f"{diff:.1e}", "yes" if diff <= ENCODING_TOL else "NO"]]


def load_average() -> float:
    """The 1-minute load average (warned about when other work is running)."""
    load = round(os.getloadavg()[0], 2)  # other work on the machine slows FAISS's OpenMP threads most
    if load > 0.5 * (os.cpu_count() or 1):
        log.warning("load average %.2f on %d cores: other work is running, the timings will be slow and noisy",
                    load, os.cpu_count() or 1)
    return load


def report(title: str, section: str, md_columns: tuple[str, ...], columns: tuple[str, ...], rows: list[list[object]],
           args: argparse.Namespace, load: float) -> None:
    """Print ``rows`` under ``title`` and append them to ``section`` (unless --no-append)."""
    if not rows:
        return
    print(f"\n{title}\n{text_table(columns, rows)}", flush=True)
    if not args.no_append:
        stamp, host, cmd = now(), machine(), command_line("bench/backends.py")
        append_rows(section, md_columns, [[stamp, host, load, *r, cmd] for r in rows])


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    args = parse_args(argv)
    plan = targets(args)
    log.info("sizes %s; backends %s", ", ".join(f"{n:,}" for n in args.n), ", ".join(t.index for t in plan))
    started = time.perf_counter()
    for n in args.n:
        t = time.perf_counter()
        load = load_average()
        rows = backends_at(n, args, plan)
        report(f"vector backends, n = {n:,}", SECTION, MD_COLUMNS, COLUMNS, rows, args, load)
        if not args.no_recognition:
            load = load_average()
            rows = recognition_at(n, args, plan)
            report(f"recognition, {n // 50:,} categories x 50 members", RECOGNITION_SECTION, RECOGNITION_MD_COLUMNS,
                   RECOGNITION_COLUMNS, rows, args, load)
        log.info("n=%d done in %.0fs", n, time.perf_counter() - t)
    if not args.no_encoding:
        t = time.perf_counter()
        load = load_average()
        report("encoding: Ray vs local", ENCODING_SECTION, ENCODING_MD_COLUMNS, ENCODING_COLUMNS, encoding(args),
               args, load)
        log.info("encoding done in %.0fs", time.perf_counter() - t)
    log.info("all done in %.0fs", time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
