"""Vector backends side by side: upsert rate and search throughput of the FAISS files and Milvus (milvus-lite, FLAT).

    .venv/bin/python bench/backends.py [--n 100000] [--dim 384] [--queries 100] [--k 10] [--backends faiss,milvus]
                                       [--no-append]

Data: ``--n`` random unit vectors of dimension ``--dim`` under sparse int64 keys, each with an int64 ``category``
(100 categories) and a short string ``label``; queries are ``--queries`` random unit vectors. Per backend, in this
order: upsert everything (Milvus in batches of 5,000 rows), flush, then a batched search of all queries for the top
``--k`` (a warm-up call first, then the median of 3), the same queries one at a time (p50 latency), and the
batched search filtered to 10 of the 100 categories (``category in [...]``). "top-k agree" is the share of the
FAISS backend's top-k keys the backend also returned (both are exact: ~100 %, ties aside). Milvus runs embedded
(milvus-lite, a pure-Python engine on faiss-cpu, in a temporary folder), so its figures are those of one process
on this machine, not of a Milvus server. Prints a table and appends one row per backend to BENCHMARKS.md
(section "vector backends (bench/backends.py)"), with the 1-minute load average when it started (another job on
the cores makes FAISS's OpenMP threads stall), unless --no-append.

Recognition (unless --no-recognition): ``--n`` // 50 categories of 50 centre members whose members share their
category's direction (cosine ~0.67, as bench/recognize.py), in the recognizer's default space and rule (centred,
the mean of the 3 best members), ``--queries`` queries near members, k = 5: the FAISS engine (its own in-memory
index), and the exact backend engine (retrieval/recognition/backend_engine.py) on each backend. Queries/s is the
median of 3 batched calls after a warm-up; "equal" says whether every answer (labels and scores) is identical to
the FAISS engine's. Rows go to the section "recognition over vector backends (bench/backends.py)".
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repo root first

from bench.recognize import category_members, timed, unit  # noqa: E402 (the same data and timer as recognize.py)
from bench.report import append_rows, command_line, machine, median, now, text_table  # noqa: E402

log = logging.getLogger("bench.backends")

SECTION = "vector backends (bench/backends.py)"
CATEGORIES, FILTER_CATEGORIES = 100, 10
COLUMNS = ("backend", "index", "n", "d", "upsert s", "upsert rows/s", "flush s", "B", "k", "batch ms",
           "queries/s", "single p50 ms", "filtered queries/s", "top-k agree %")
MD_COLUMNS = ("date", "machine", "load 1 min", *COLUMNS, "command")
RECOGNITION_SECTION = "recognition over vector backends (bench/backends.py)"
RECOGNITION_COLUMNS = ("engine", "categories", "members", "d", "B", "k", "top_m", "populate s", "batch ms",
                       "queries/s", "equal to the FAISS engine")
RECOGNITION_MD_COLUMNS = ("date", "machine", "load 1 min", *RECOGNITION_COLUMNS, "command")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="rows (default 100,000)")
    p.add_argument("--dim", type=int, default=384, help="vector dimension (default 384)")
    p.add_argument("--queries", type=int, default=100, help="queries (default 100)")
    p.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    p.add_argument("--backends", default="faiss,milvus", help="comma-separated: faiss, milvus (default both)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-recognition", action="store_true", help="skip the recognition part")
    p.add_argument("--no-append", action="store_true", help="print only; do not append to BENCHMARKS.md")
    return p.parse_args(argv)


def measure(backend: object, ids: np.ndarray, vectors: np.ndarray, fields: dict[str, np.ndarray],
            queries: np.ndarray, k: int) -> tuple[dict[str, float], np.ndarray]:
    """The timings of one backend (see the module docstring) and its batched top-k keys."""
    from unibind.indexer.index.backend import Filter

    upsert = timed(lambda: backend.upsert(ids, vectors, fields))  # type: ignore[attr-defined]
    flush = timed(backend.flush)  # type: ignore[attr-defined]
    log.info("%s: upserted %d rows in %.1fs, flushed in %.2fs", backend.kind, len(ids), upsert, flush)  # type: ignore[attr-defined]
    _, top = backend.search(queries, k)  # type: ignore[attr-defined]  # warm-up
    batch = median([timed(lambda: backend.search(queries, k)) for _ in range(3)])  # type: ignore[attr-defined]
    single = median([timed(lambda: backend.search(q[None], k)) for q in queries])  # type: ignore[attr-defined]
    allowed = Filter.isin("category", range(FILTER_CATEGORIES))
    backend.search(queries, k, allowed)  # type: ignore[attr-defined]
    filtered = median([timed(lambda: backend.search(queries, k, allowed)) for _ in range(3)])  # type: ignore[attr-defined]
    return {"upsert": upsert, "flush": flush, "batch": batch, "single": single, "filtered": filtered}, top


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    args = parse_args(argv)
    from unibind.indexer.index.backend import FaissBackend
    from unibind.indexer.runtime.device import Device
    from unibind.indexer.runtime.vectors import normalize

    kinds = [b.strip() for b in args.backends.split(",") if b.strip()]
    rng = np.random.default_rng(args.seed)
    ids = rng.choice(10 * args.n, size=args.n, replace=False).astype(np.int64)
    vectors = normalize(rng.standard_normal((args.n, args.dim)))
    fields = {"category": rng.integers(0, CATEGORIES, args.n),
              "label": np.array([f"item {i % 1000}" for i in range(args.n)])}
    queries = normalize(rng.standard_normal((args.queries, args.dim)))
    types = {"category": "int64", "label": "str"}
    host, rows, reference = machine(), [], None
    load = round(os.getloadavg()[0], 2)  # other work on the machine slows FAISS's OpenMP threads most
    if load > 0.5 * (os.cpu_count() or 1):
        log.warning("load average %.2f on %d cores: other work is running, the timings will be slow and noisy",
                    load, os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="unibind-backends-") as folder:
        for kind in kinds:
            if kind == "faiss":
                backend = FaissBackend(args.dim, fields=types, path=Path(folder) / "rows.faiss", device=Device())
                index = "Flat"
            elif kind == "milvus":
                from unibind.indexer.index.milvus_backend import MilvusBackend

                backend = MilvusBackend(str(Path(folder) / "lite"), "bench", args.dim, fields=types)
                index = "FLAT (milvus-lite)"
            else:
                raise SystemExit(f"unknown backend {kind!r}; choose from faiss, milvus")
            try:
                t, top = measure(backend, ids, vectors, fields, queries, args.k)
            finally:
                backend.close()
            if reference is None:
                reference = top
            agree = 100.0 * np.mean([len(set(a) & set(b)) / args.k for a, b in zip(top.tolist(), reference.tolist())])
            rows.append([kind, index, args.n, args.dim, round(t["upsert"], 2), round(args.n / t["upsert"]),
                         round(t["flush"], 2), args.queries, args.k, round(1e3 * t["batch"], 1),
                         round(args.queries / t["batch"]), round(1e3 * t["single"], 2),
                         round(args.queries / t["filtered"]), round(agree, 1)])
    print(text_table(COLUMNS, rows))
    stamp, cmd = now(), command_line("bench/backends.py")
    if not args.no_append:
        append_rows(SECTION, MD_COLUMNS, [[stamp, host, load, *r, cmd] for r in rows])
    if not args.no_recognition:
        rec_rows = recognition(args, kinds)
        print(text_table(RECOGNITION_COLUMNS, rec_rows))
        if not args.no_append:
            append_rows(RECOGNITION_SECTION, RECOGNITION_MD_COLUMNS, [[stamp, host, load, *r, cmd] for r in rec_rows])
    return 0


def recognition(args: argparse.Namespace, kinds: list[str]) -> list[list[object]]:
    """The FAISS engine and the backend engine on each backend, on clustered centres (see the module docstring)."""
    from unibind.indexer.index.backend import FaissBackend
    from unibind.indexer.runtime.device import Device
    from unibind.indexer.runtime.vectors import normalize
    from unibind.retrieval.recognition.backend_engine import BackendEngine
    from unibind.retrieval.recognition.engine import DEFAULT_TOP_M, CentreTable
    from unibind.retrieval.recognition.faiss_engine import FaissEngine

    K, k = 50, 5
    C = max(2, args.n // K)
    rng = np.random.default_rng(args.seed + 1)
    members = category_members(rng, C, K, args.dim, 0.67)
    table = CentreTable([f"category {c}" for c in range(C)], members, np.repeat(np.arange(C, dtype=np.int64), K)).centred()
    queries = normalize(members[rng.integers(0, C * K, args.queries)] + unit(rng, args.queries, args.dim))
    out: list[list[object]] = []
    reference = None
    with tempfile.TemporaryDirectory(prefix="unibind-backends-rec-") as folder:
        engines: list[tuple[str, Callable[[], object]]] = [("faiss engine", lambda: FaissEngine(table, Device(), top_m=DEFAULT_TOP_M))]
        for kind in kinds:
            if kind == "faiss":
                engines.append(("backend engine, faiss backend", lambda: BackendEngine(
                    table, Device(), FaissBackend(args.dim, fields={"category": "int64"}, path=Path(folder) / "c.faiss"),
                    top_m=DEFAULT_TOP_M)))
            elif kind == "milvus":
                from unibind.indexer.index.milvus_backend import MilvusBackend

                engines.append(("backend engine, milvus-lite FLAT", lambda: BackendEngine(
                    table, Device(), MilvusBackend(str(Path(folder) / "lite"), "centres", args.dim,
                                                   fields={"category": "int64"}), top_m=DEFAULT_TOP_M)))
        for name, build in engines:
            t = time.perf_counter()
            engine = build()
            populate_s = time.perf_counter() - t
            engine.recognize(queries, k)  # warm-up
            times = [timed(lambda: engine.recognize(queries, k)) for _ in range(3)]
            got = engine.recognize(queries, k)
            reference = got if reference is None else reference
            log.info("%s: %.1f queries/s", name, args.queries / median(times))
            out.append([name, C, C * K, args.dim, args.queries, k, DEFAULT_TOP_M, round(populate_s, 2),
                        round(1e3 * median(times), 1), round(args.queries / median(times)), "yes" if got == reference else "NO"])
            backend = getattr(engine, "backend", None)
            if backend is not None:
                backend.close()
    return out


if __name__ == "__main__":
    sys.exit(main())
