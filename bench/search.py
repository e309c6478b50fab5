"""Gallery search: exact flat vs IVF vs HNSW on 1M synthetic vectors, and hydrating results from PostgreSQL.

    .venv/bin/python bench/search.py [--n 1000000] [--dim 512] [--queries 1000] [--k 10] [--repeats 3]
                                     [--factories "IVF4096,Flat;HNSW32"] [--nprobe 4,8,16,32,64]
                                     [--ef-search 16,32,64,128,256] [--ef-construction 40]
                                     [--hydrate-rows 1000000] [--skip-hydrate] [--pg-url URL] [--no-append]

Data (seeded): a Gaussian mixture on the unit sphere that looks like real embeddings. ``--centres``
(4,000) centres are ``normalize(0.5 * u + g)`` with one shared unit direction ``u`` and ``g ~ N(0, I/d)``
(real embedding sets are anisotropic: the mean cosine between centres is ~0.2). Clusters have uneven
sizes (log-normal weights, like categories in a gallery) and their own spread ``s ~ U(0.7, 1.3)``; a point
is ``normalize(centre + s * g)``, cosine ~0.6-0.8 to its centre. Vectors are float32, ids ``arange(n)``
(int64). The ``--queries`` queries are a separate draw from the same mixture, not gallery points.

Search: every index is built through ``VectorStore`` (inner product, on CPU, FAISS using all usable
cores): IVF is trained on ``--train-per-list`` (30) x nlist sample points, then every index gets the
gallery in chunks of 100,000; ``build s`` is train + add. The exact ``Flat`` index is built first (its
top-k is the ground truth) and kept; the other indexes (``--factories``, a ';'-separated list of FAISS
factory strings) are built, measured and freed one at a time. Each setting (IVF ``nprobe``, HNSW
``efSearch``) is warmed up, then each repeat times the batched search of all queries through
``VectorStore.search``, next to it (alternating which goes first) the bare ``index.search`` on the raw
FAISS index, and the flat index on the first ``--flat-queries`` (200) queries. queries/s = queries ÷
the median wrapper time; wrapper÷bare and the speed-up vs flat (queries/s ÷ flat queries/s of the same
repeat: the shared machine's load drifts between settings, so the flat rate is re-timed alongside) are
medians of per-repeat ratios. recall@k is the mean |approximate top-k ∩ exact top-k| / k. Target: an
option with recall@10 ≥ 0.95 at ≥ 10x flat's queries/s.

Hydration: a fresh PostgreSQL schema holds a table that mirrors the gallery's item rows (id, space,
modality, uri, label, JSON meta, raw bytes, the 512-d float32 vector as 2 KB of bytes, created_at),
filled by binary COPY with ``--hydrate-rows`` rows (vectors are the gallery's, cycled) and ANALYZEd.
After a warm-up, each of ``--hydrate-repeats`` (200) repeats draws 100 random ids and times fetching
(id, uri, label, meta) for them through a SQLAlchemy 2.0 session (a new ``Session`` per hydration, rows
put back in result order) with ``select(...).where(items.c.id.in_(ids))`` and with ``id = ANY(:ids)``
(one array parameter), then the bare psycopg query ``... WHERE id = ANY(%s)`` on the same ids; p50 / p95
of each session form, and the median ratio session ÷ bare, are reported. Target: p50 ≤ 5 ms. The schema
is dropped afterwards.

Prints two tables and appends their rows to BENCHMARKS.md (sections "gallery search (bench/search.py)"
and "gallery hydration (bench/search.py)") unless --no-append.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repo root first

from bench.report import append_rows, command_line, machine, median, now, text_table  # noqa: E402

if TYPE_CHECKING:
    from sqlalchemy import Engine, MetaData, Table

    from unibind.indexer.runtime.faiss_lib import faiss
    from unibind.indexer.index.vector_store import VectorStore

log = logging.getLogger("bench.search")

SEARCH_SECTION = "gallery search (bench/search.py)"
HYDRATE_SECTION = "gallery hydration (bench/search.py)"
TARGET_RECALL, TARGET_SPEEDUP, TARGET_P50_MS = 0.95, 10.0, 5.0
TARGET = f"recall ≥ {TARGET_RECALL} at ≥ {TARGET_SPEEDUP:g}x flat"
DEFAULT_FACTORIES = "IVF4096,Flat;HNSW32"
DEFAULT_PG_URL = os.environ.get("UNIBIND_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CHUNK = 100_000
HYDRATE_RESULTS = 100
SEARCH_COLUMNS = (
    "index", "setting", "build s", "queries/s", "flat queries/s alongside", "speed-up vs flat", "recall@k",
    "wrapper÷bare", TARGET,
)
SEARCH_MD = ("date", "machine", "faiss threads", "n", "dim", "queries", "k", *SEARCH_COLUMNS, "command")
HYDRATE_COLUMNS = (
    "rows", "results", "query", "repeats", "p50 ms", "p95 ms", "bare p50 ms", "session÷bare", f"p50 ≤ {TARGET_P50_MS:g} ms",
)
HYDRATE_MD = ("date", "machine", *HYDRATE_COLUMNS, "command")


def int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="gallery vectors (default 1,000,000)")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=10, help="neighbours per query; recall@k (default 10)")
    p.add_argument("--repeats", type=int, default=3, help="timed searches per setting (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--centres", type=int, default=4000, help="mixture components (default 4000)")
    p.add_argument("--factories", default=DEFAULT_FACTORIES,
                   help=f"';'-separated FAISS factory strings besides Flat (default {DEFAULT_FACTORIES!r})")
    p.add_argument("--nprobe", type=int_list, default=[4, 8, 16, 32, 64], help="IVF nprobe sweep")
    p.add_argument("--ef-search", type=int_list, default=[16, 32, 64, 128, 256], help="HNSW efSearch sweep")
    p.add_argument("--ef-construction", type=int, default=40, help="HNSW efConstruction (default 40, FAISS's)")
    p.add_argument("--flat-queries", type=int, default=200, help="queries of the flat search timed alongside (200)")
    p.add_argument("--train-per-list", type=int, default=30, help="IVF training points per list (default 30)")
    p.add_argument("--hydrate-rows", type=int, default=1_000_000, help="rows in the hydration table (1,000,000)")
    p.add_argument("--hydrate-repeats", type=int, default=200)
    p.add_argument("--skip-hydrate", action="store_true", help="measure search only")
    p.add_argument("--skip-search", action="store_true", help="measure hydration only")
    p.add_argument("--pg-url", "--db", default=DEFAULT_PG_URL,
                   help="PostgreSQL server (default $UNIBIND_TEST_DATABASE_URL or the local test server)")
    p.add_argument("--no-append", "--no-record", action="store_true", help="print only; do not append to BENCHMARKS.md")
    args = p.parse_args(argv)
    args.factories = [f.strip() for f in args.factories.split(";") if f.strip() and f.strip() != "Flat"]
    counts = ("n", "dim", "queries", "flat_queries", "k", "repeats", "centres", "ef_construction", "train_per_list",
              "hydrate_rows", "hydrate_repeats")
    if any(getattr(args, c) < 1 for c in counts) or min(args.nprobe + args.ef_search, default=0) < 1:
        p.error(f"--{', --'.join(c.replace('_', '-') for c in counts)}, --nprobe and --ef-search must be >= 1")
    if args.hydrate_rows < HYDRATE_RESULTS:
        p.error(f"--hydrate-rows must be >= {HYDRATE_RESULTS}")
    return args


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class Mixture:
    centres: np.ndarray  # [C, d] unit
    weights: np.ndarray  # [C], sums to 1
    spread: np.ndarray  # [C], noise norm per component

    @classmethod
    def draw(cls, rng: np.random.Generator, n_centres: int, dim: int) -> Mixture:
        from unibind.indexer.runtime.vectors import normalize

        common = normalize(rng.standard_normal(dim, dtype=np.float32))[0]  # [d], the shared direction
        g = rng.standard_normal((n_centres, dim), dtype=np.float32) / np.sqrt(dim)
        weights = rng.lognormal(0.0, 1.0, n_centres)
        spread = rng.uniform(0.7, 1.3, n_centres).astype(np.float32)
        return cls(normalize(0.5 * common + g), weights / weights.sum(), spread)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """[n, d] float32 unit vectors, drawn in chunks to bound the temporary memory."""
        from unibind.indexer.runtime.vectors import normalize

        dim = self.centres.shape[1]
        out = np.empty((n, dim), dtype=np.float32)
        for start in range(0, n, CHUNK):
            m = min(CHUNK, n - start)
            comp = rng.choice(len(self.weights), size=m, p=self.weights)
            noise = rng.standard_normal((m, dim), dtype=np.float32) * (self.spread[comp] / np.sqrt(dim))[:, None]
            out[start:start + m] = normalize(self.centres[comp] + noise)
        return out


# ---------------------------------------------------------------- search


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def build(
    factory: str, gallery: np.ndarray, args: argparse.Namespace, rng: np.random.Generator
) -> tuple[VectorStore, float]:
    """A filled VectorStore and its build time in seconds (train + add)."""
    from unibind.indexer.runtime.device import Device
    from unibind.indexer.runtime.faiss_lib import faiss
    from unibind.indexer.index.vector_store import VectorStore

    store = VectorStore.create(gallery.shape[1], Device(), factory)
    t0 = time.perf_counter()
    if (ivf := faiss.try_extract_index_ivf(store.index)) is not None:
        nlist = ivf.nlist
        picks = rng.choice(len(gallery), size=min(len(gallery), args.train_per_list * nlist), replace=False)
        sample = gallery[np.sort(picks)]  # [T, d]
        store.train(sample)
        del sample
        log.info("%s: trained in %.1fs", factory, time.perf_counter() - t0)
    elif isinstance(store.index, faiss.IndexIDMap):
        inner = faiss.downcast_index(store.index.index)
        if hasattr(inner, "hnsw"):
            inner.hnsw.efConstruction = args.ef_construction
    ids = np.arange(len(gallery), dtype=np.int64)
    for start in range(0, len(gallery), CHUNK):
        store.add(ids[start:start + CHUNK], gallery[start:start + CHUNK])
        done, spent = start + min(CHUNK, len(gallery) - start), time.perf_counter() - t0
        log.info("%s: %d/%d added, %.1fs (ETA %.0fs)", factory, done, len(gallery), spent,
                 spent / done * (len(gallery) - done))
    return store, time.perf_counter() - t0


def settings(index: faiss.Index, args: argparse.Namespace) -> Iterator[str]:
    """Set each search setting of the sweep on ``index`` in turn, yielding its description."""
    from unibind.indexer.runtime.faiss_lib import faiss

    if (ivf := faiss.try_extract_index_ivf(index)) is not None:
        quantizer = faiss.downcast_index(ivf.quantizer)
        for nprobe in args.nprobe:
            ivf.nprobe = nprobe
            if hasattr(quantizer, "hnsw"):
                quantizer.hnsw.efSearch = max(64, 2 * nprobe)
                yield f"nprobe={nprobe}, quantizer efSearch={quantizer.hnsw.efSearch}"
            else:
                yield f"nprobe={nprobe}"
        return
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    if hasattr(inner, "hnsw"):
        for ef in args.ef_search:
            inner.hnsw.efSearch = ef
            yield f"efSearch={ef}, efConstruction={inner.hnsw.efConstruction}"
        return
    yield "exact"


@dataclass
class Timing:
    seconds: float  # median wrapper time of the batched search of all queries
    ratio: float  # median wrapper÷bare
    speedup: float  # median of (this index's queries/s ÷ the flat index's, timed alongside)
    flat_qps: float  # median flat queries/s timed alongside (on the reference slice of the queries)
    ids: np.ndarray  # [Q, k]


def measure(
    store: VectorStore, queries: np.ndarray, args: argparse.Namespace, flat: VectorStore | None = None
) -> Timing:
    """Time the batched search of all queries through ``store`` and the bare FAISS call; with ``flat``,
    also the flat index on the first ``--flat-queries`` queries in each repeat, so the speed-up is a ratio
    of times taken side by side (the machine's load changes between settings)."""
    store.search(queries[: min(100, len(queries))], args.k)  # warm-up
    ref = queries[: args.flat_queries]
    wrapper, ratios, speedups, flat_qps, found = [], [], [], [], None
    for rep in range(args.repeats):
        bare = timed(lambda: store.index.search(queries, args.k)) if rep % 2 else 0.0  # alternate the order
        t = time.perf_counter()
        _, ids = store.search(queries, args.k)
        wrapper.append(time.perf_counter() - t)
        bare = bare or timed(lambda: store.index.search(queries, args.k))
        ratios.append(wrapper[-1] / bare)
        if flat is not None:
            flat_qps.append(len(ref) / timed(lambda: flat.search(ref, args.k)))
            speedups.append(len(queries) / wrapper[-1] / flat_qps[-1])
        found = ids
    assert found is not None
    qps = len(queries) / median(wrapper)
    return Timing(median(wrapper), median(ratios), median(speedups) if speedups else 1.0,
                  median(flat_qps) if flat_qps else qps, found)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(np.intersect1d(f[f >= 0], t)) / k for f, t in zip(found, truth)]))


def run_search(
    args: argparse.Namespace, gallery: np.ndarray, queries: np.ndarray, rng: np.random.Generator
) -> list[list[object]]:
    """One row per index and search setting; the exact flat index is built first and kept as the reference."""
    flat, build_s = build("Flat", gallery, args, rng)
    timing = measure(flat, queries, args)
    truth = timing.ids
    rows: list[list[object]] = [["Flat", "exact", round(build_s, 1), round(len(queries) / timing.seconds, 1),
                                 round(timing.flat_qps, 1), 1.0, 1.0, round(timing.ratio, 3), "n/a (reference)"]]
    log.info("Flat: %.1f queries/s, wrapper÷bare %.3f", len(queries) / timing.seconds, timing.ratio)
    for factory in args.factories:
        store, build_s = build(factory, gallery, args, rng)
        for setting in settings(store.index, args):
            t = measure(store, queries, args, flat)
            qps, r = len(queries) / t.seconds, recall(t.ids, truth)
            meets = "yes" if r >= TARGET_RECALL and t.speedup >= TARGET_SPEEDUP else "no"
            rows.append([factory, setting, round(build_s, 1), round(qps, 1), round(t.flat_qps, 1), round(t.speedup, 2),
                         round(r, 4), round(t.ratio, 3), meets])
            log.info("%s %s: %.0f queries/s (%.1fx flat alongside), recall@%d %.4f, wrapper÷bare %.3f",
                     factory, setting, qps, t.speedup, args.k, r, t.ratio)
        del store
        gc.collect()
    return rows


# ---------------------------------------------------------------- hydration


def items_table(metadata: MetaData) -> Table:
    """Mirrors ``unibind.schema.models.Item`` (the gallery's item rows), defined here so the benchmark does not
    depend on the ORM models."""
    from sqlalchemy import JSON, BigInteger, Column, DateTime, Integer, LargeBinary, String, Table, Text

    return Table(
        "items", metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=False),
        Column("space_id", Integer, nullable=False),
        Column("modality_id", Integer, nullable=False),
        Column("uri", Text),
        Column("label", String(500)),
        Column("meta", JSON),
        Column("raw", LargeBinary),
        Column("vector", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """A URL whose search_path is a new schema, dropped afterwards (as tests/conftest.py's pg_url)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    schema = f"t_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(parsed, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as e:  # noqa: BLE001 - any failure here means the server cannot be used
        admin.dispose()
        where = parsed.render_as_string(hide_password=True)
        raise SystemExit(
            f"PostgreSQL at {where} is not usable: {str(e).splitlines()[0]} (pass --pg-url, or --skip-hydrate)"
        ) from e
    try:
        yield parsed.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def fill(engine: Engine, items: Table, rows: int, gallery: np.ndarray, rng: np.random.Generator) -> None:
    """COPY ``rows`` synthetic item rows into ``items`` (binary format), then ANALYZE."""
    from datetime import datetime, timezone

    from psycopg.types.json import Json

    items.metadata.create_all(engine)
    created = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            columns = ", ".join(c.name for c in items.columns)
            with cur.copy(f"COPY items ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "int4", "int4", "text", "varchar", "json", "bytea", "bytea", "timestamptz"])
                for start in range(0, rows, CHUNK):
                    stop = min(rows, start + CHUNK)
                    vectors = gallery[np.arange(start, stop) % len(gallery)].astype("<f4")
                    cats = rng.integers(0, 1000, size=stop - start)
                    for i, vec, cat in zip(range(start, stop), vectors, cats):
                        copy.write_row((
                            i, 1, 1 + i % 2, f"file:///gallery/{cat:04d}/{i:08d}.jpg", f"category {cat}",
                            Json({"source": "synthetic", "category": int(cat), "width": 640, "height": 480}),
                            f"item {i} of category {cat}".encode(), vec.tobytes(), created,
                        ))
                    spent = time.perf_counter() - t0
                    log.info("hydration table: %d/%d rows copied, %.1fs (ETA %.0fs)", stop, rows, spent,
                             spent / stop * (rows - stop))
        raw.commit()
    finally:
        raw.close()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        from sqlalchemy import text

        conn.execute(text("ANALYZE items"))
        size = conn.execute(text("SELECT pg_size_pretty(pg_total_relation_size('items'))")).scalar_one()
    log.info("hydration table: %d rows, %s, filled and analysed in %.1fs", rows, size, time.perf_counter() - t0)


def run_hydrate(args: argparse.Namespace, gallery: np.ndarray, rng: np.random.Generator) -> list[list[object]]:
    from sqlalchemy import MetaData, create_engine, select
    from sqlalchemy.orm import Session

    from unibind.schema.database import id_in

    with fresh_schema(args.pg_url) as url:
        engine = create_engine(url)
        try:
            items = items_table(MetaData())
            fill(engine, items, args.hydrate_rows, gallery, rng)
            cols = (items.c.id, items.c.uri, items.c.label, items.c.meta)
            wheres = {  # the session's query forms, by the name the table shows
                "session, id IN (...)": lambda ids: items.c.id.in_(ids),
                # what the search's hydration uses on PostgreSQL (unibind.schema.database.id_in)
                "session, id = ANY(:ids)": lambda ids: id_in(items.c.id, ids, "postgresql"),
            }
            raw = engine.raw_connection()

            def hydrate(where: Callable[[list[int]], object], ids: list[int]) -> list[object]:
                with Session(engine) as session:
                    found = {row.id: row for row in session.execute(select(*cols).where(where(ids)))}
                return [found[i] for i in ids if i in found]  # in result order

            def bare(ids: list[int]) -> list[object]:
                with raw.cursor() as cur:
                    cur.execute("SELECT id, uri, label, meta FROM items WHERE id = ANY(%s)", (ids,))
                    return cur.fetchall()

            calls: dict[str, Callable[[list[int]], object]] = {
                name: (lambda ids, w=where: hydrate(w, ids)) for name, where in wheres.items()
            }
            calls["bare psycopg, id = ANY(%s)"] = bare
            draw = lambda: rng.choice(args.hydrate_rows, size=HYDRATE_RESULTS, replace=False).tolist()  # noqa: E731
            for _ in range(20):  # warm-up: connection pool, statement caches, server-side prepare
                ids = draw()
                assert all(len(fn(ids)) == HYDRATE_RESULTS for fn in calls.values())  # type: ignore[arg-type]
            times: dict[str, list[float]] = {name: [] for name in calls}
            for _ in range(args.hydrate_repeats):
                ids = draw()
                for name, fn in calls.items():
                    times[name].append(timed(lambda: fn(ids)))
            raw.close()
        finally:
            engine.dispose()
    bare_s = times.pop("bare psycopg, id = ANY(%s)")
    rows: list[list[object]] = []
    for name, secs in times.items():
        ms = np.array(secs) * 1e3
        p50, p95 = float(np.percentile(ms, 50)), float(np.percentile(ms, 95))
        ratio = median([s / b for s, b in zip(secs, bare_s)])
        log.info("hydration of %d results, %s: p50 %.2f ms, p95 %.2f ms, bare p50 %.2f ms", HYDRATE_RESULTS, name,
                 p50, p95, median(bare_s) * 1e3)
        rows.append([args.hydrate_rows, HYDRATE_RESULTS, name, args.hydrate_repeats, round(p50, 3), round(p95, 3),
                     round(median(bare_s) * 1e3, 3), round(ratio, 3), "yes" if p50 <= TARGET_P50_MS else "no"])
    return rows


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    args = parse_args(argv)

    from unibind.indexer.runtime.faiss_lib import faiss

    threads = len(os.sched_getaffinity(0))
    faiss.omp_set_num_threads(threads)
    host = machine()
    log.info("machine: %s; faiss threads: %d", host, threads)
    if not args.skip_hydrate:  # fail fast, before the long index builds
        with fresh_schema(args.pg_url):
            pass
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    mixture = Mixture.draw(rng, args.centres, args.dim)
    gallery = mixture.sample(rng, args.n)  # [n, d]
    queries = mixture.sample(np.random.default_rng([args.seed, 1]), args.queries)  # [Q, d]
    log.info("data: %d x %d gallery, %d queries, %d centres, drawn in %.1fs", args.n, args.dim, args.queries,
             args.centres, time.perf_counter() - t0)

    search_rows = [] if args.skip_search else run_search(args, gallery, queries, rng)
    hydrate_rows = [] if args.skip_hydrate else run_hydrate(args, gallery, rng)

    date, cmd = now(), f"`{command_line('bench/search.py')}`"
    if search_rows:
        print(f"\ngallery search, {date}, {host}, faiss threads {threads}, n={args.n}, dim={args.dim}, "
              f"queries={args.queries}, k={args.k}, repeats={args.repeats} (recall@k against Flat)")
        print(text_table(SEARCH_COLUMNS, search_rows))
        best = [r for r in search_rows if r[-1] == "yes"]
        print(f"fastest option meeting the target: {max(best, key=lambda r: r[5])[:2] if best else 'none'}")
    if hydrate_rows:
        print(f"\ngallery hydration of {HYDRATE_RESULTS} results from PostgreSQL, {date}, {host}")
        print(text_table(HYDRATE_COLUMNS, hydrate_rows))
    if not args.no_append:
        if search_rows:
            head = [date, host, threads, args.n, args.dim, args.queries, args.k]
            append_rows(SEARCH_SECTION, SEARCH_MD, [[*head, *r, cmd] for r in search_rows])
        if hydrate_rows:
            append_rows(HYDRATE_SECTION, HYDRATE_MD, [[date, host, *r, cmd] for r in hydrate_rows])
    log.info("total %.1fs", time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
