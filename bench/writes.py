"""Write path: what a small write costs in stores of growing size, and what segments cost readers.

    .venv/bin/python bench/writes.py [--sizes 10000,100000,1000000] [--publishes 5] [--batch 1000] [--dim 384]
                                     [--db postgresql+psycopg://postgres@127.0.0.1:5432/test] [--mixed-seconds 60]
                                     [--vectors faiss|milvus-lite[:PATH]|milvus://HOST:PORT] [--no-append]

For each size N, a fresh store (SQLite in a temp folder, or with ``--db`` a fresh schema on that PostgreSQL server,
dropped afterwards) gets one corpus of N precomputed unit vectors (d 384, no encoding: the vectors stand in for an
encoder's); then ``--publishes`` rounds ingest ``--batch`` precomputed vectors into each store in turn (so the
machine's drift falls on every size alike). Per publish:

- **seconds**: the whole ``ingest`` call (its 1,000 rows written to the store, the new segment, the publishing
  commit, compaction when the policy asks, the vacuum), and **index part**: all of that but the rows (the segment,
  the commit, the upkeep);
- **bytes written**: what the process passed to ``write()`` meanwhile (``/proc/self/io`` wchar: on SQLite the
  database, its write-ahead log checkpointed before each write, and the segment file; on PostgreSQL the server
  writes the rows, so only the segment file), and **index bytes added**: how much the index folder grew;
- **peak RSS**: the process's resident memory above what it held before, sampled every 5 ms;
- **lock ms**: how long the catalog lock was held (from the statement that takes it to the commit), the longest of
  the write's transactions that take it.

Beside them, the bare library calls on the same data: ``faiss.write_index`` of a flat index of the 1,000 new vectors
(what a write needs at least), and of all N + 1,000 vectors (what every write cost before segments: the whole index
rewritten). The ratio 1M ÷ 10k of the median publish seconds is the headline (goal: at most 1.5).

With ``--vectors milvus-lite`` (a temp folder) or ``milvus://HOST:PORT``, the stores' indexes live in Milvus: a write
inserts its rows into the index's one collection under a segment token. The bare call beside it is pymilvus's own
``insert`` of the same 1,000 rows into a collection of the same schema (and the ``flush`` milvus-lite needs to keep
them), and the bulk ingest of each store's N base vectors (which makes the index's collection) is compared with a
bare creation of such a collection and insert of the same N rows (throughput ratio: bare seconds ÷ ours, goal at
least 0.8). The reader, mixed and service runs stay on FAISS.

Readers: at the largest size the index is cut into 16 segments (the compaction policy's bound), then compacted into
one; both stay loaded and are searched in turn (B = 1 and B = 100, k = 10, 30 times each after a warm-up): the ratio
of the medians (goal: at most 1.3), and whether they return the same hits.

Mixed (``--mixed-seconds``, at the smallest size): 4 writer threads ingest and delete small corpora while 8 reader
threads search; every reader answer must come from one whole catalog version (each corpus all there or absent, the
hits equal to a NumPy search over the rows that version sees), no operation may fail, and at the end every corpus a
writer published (and did not delete) is there.

Service (``--service-vectors``, default 100,000): a real ``unibind serve`` answers ``POST /v1/search`` to 4 client
threads while ``DELETE /v1/corpora/victim`` runs; p99 latency during the DELETE against idle p99.

Prints tables and appends rows to BENCHMARKS.md (sections "write path (bench/writes.py)", "segmented search
(bench/writes.py)", "mixed writers and readers (bench/writes.py)", "DELETE beside queries (bench/writes.py)")
unless --no-append.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repo root first

from bench.report import append_rows, command_line, machine, median, now, text_table  # noqa: E402

log = logging.getLogger("bench.writes")

WRITE_SECTION = "write path (bench/writes.py)"
BULK_SECTION = "bulk ingest into Milvus (bench/writes.py --vectors)"
SEARCH_SECTION = "segmented search (bench/writes.py)"
MIXED_SECTION = "mixed writers and readers (bench/writes.py)"
DELETE_SECTION = "DELETE beside queries (bench/writes.py)"
SEGMENTS = 16


# -- tiny real things ----------------------------------------------------------------------------------
class Precomputed:
    """An encoder of the space ``bench-d<dim>`` that answers each text with the vector it was given for it (the
    benchmark measures the write path, not a model)."""

    def __init__(self, dim: int) -> None:
        from unibind.indexer.runtime.device import Device

        self.spec, self.dim, self.device = f"st:bench-d{dim}", dim, Device()
        self.modalities = frozenset({"text"})
        self.vectors: dict[str, np.ndarray] = {}

    def encode_text(self, texts: Sequence[str], **_: Any) -> np.ndarray:
        return np.stack([self.vectors[t] for t in texts]) if texts else np.empty((0, self.dim), np.float32)


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def corpus(encoder: Precomputed, tag: str, vectors: np.ndarray, per_class: int = 50) -> Any:
    """A corpus of ``len(vectors)`` descriptions whose vectors are ``vectors``."""
    from unibind.indexer.readers.corpus import CorpusData, Record
    from unibind.indexer.readers.text import text_hash

    records = []
    for i, v in enumerate(vectors):
        text = f"{tag} description {i}"
        encoder.vectors[text] = v
        records.append(Record(f"{tag} class {i // per_class}", text, text_hash(text), None, None))
    return CorpusData(f"{tag}.json", "json", records, 0, "0" * 64)


@contextlib.contextmanager
def store(url: str | None) -> Iterator[tuple[str, Path]]:
    """A fresh store: (database URL, data folder). With a PostgreSQL ``url``, a fresh schema there, dropped after."""
    folder = Path(tempfile.mkdtemp(prefix="unibind-writes-"))
    try:
        if url is None:
            yield f"sqlite:///{folder / 'unibind.db'}", folder / "home"
        else:
            with pg_schema(url) as fresh:
                yield fresh, folder / "home"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def pg_schema(url: str) -> Iterator[str]:
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


# -- what a write costs --------------------------------------------------------------------------------
class LockClock:
    """How long each transaction that takes the catalog lock holds it: from the statement that updates the state
    row to the commit or rollback, per connection."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.engine = engine
        self.held: list[float] = []
        self._since: dict[int, float] = {}
        self._lock = threading.Lock()
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._end)
        event.listen(engine, "rollback", self._end)

    def _statement(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE STORE_STATE"):
            with self._lock:
                self._since.setdefault(id(conn.connection.dbapi_connection), time.perf_counter())

    def _end(self, conn: Any) -> None:
        with self._lock:
            start = self._since.pop(id(conn.connection.dbapi_connection), None)
            if start is not None:
                self.held.append(time.perf_counter() - start)

    def take(self) -> list[float]:
        with self._lock:
            out, self.held = self.held, []
        return out

    def close(self) -> None:
        from sqlalchemy import event

        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.engine, "commit", self._end)
        event.remove(self.engine, "rollback", self._end)


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _written() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("wchar:"))


class PeakRss:
    """The highest resident memory while the ``with`` block runs, above what the process held at its start."""

    def __enter__(self) -> PeakRss:
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def grew(self) -> int:
        return self.peak - self.base


def bare_write(vectors: np.ndarray, folder: Path) -> float:
    """Seconds for the bare FAISS calls: a flat index of ``vectors`` with ids, written to a file and fsynced."""
    from unibind.indexer.runtime.faiss_lib import faiss

    t = time.perf_counter()
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    index.add_with_ids(vectors, np.arange(len(vectors), dtype=np.int64))
    path = folder / "bare.faiss"
    faiss.write_index(index, str(path))
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
    seconds = time.perf_counter() - t
    path.unlink()
    return seconds


def milvus_uri(vectors: str) -> str:
    from unibind.schema.settings import parse_vectors_spec

    spec = parse_vectors_spec(vectors)
    assert spec.uri is not None
    from unibind.indexer.index.milvus_backend import lite_path

    return spec.uri if spec.kind == "milvus" else str(lite_path(spec.uri))


class BareMilvus:
    """pymilvus's own calls on a collection of the schema unibind's segmented collections have (automatic key, the
    row key, the segment token, the vector): what inserting rows costs at least."""

    def __init__(self, vectors: str, dim: int, name: str) -> None:
        from pymilvus import MilvusClient

        from unibind.indexer.index.milvus_backend import _QUIET, _QUIET_LOGGERS

        for logger in _QUIET_LOGGERS:  # milvus-lite's harmless "not implemented" tracebacks, as unibind drops them
            logging.getLogger(logger).addFilter(_QUIET)
        self.lite = vectors.startswith("milvus-lite")
        self.client = MilvusClient(uri=milvus_uri(vectors))
        self.name, self.dim = name, dim
        self.seg_index = "INVERTED"
        self.create()
        self.token = 0

    def create(self) -> float:
        """(Re)make the collection; returns the seconds it took."""
        from pymilvus import DataType, MilvusClient

        t = time.perf_counter()
        dim = self.dim
        name = self.name
        schema = MilvusClient.create_schema(auto_id=True, enable_dynamic_field=False)
        schema.add_field("pk", DataType.INT64, is_primary=True)
        schema.add_field("key", DataType.INT64)
        schema.add_field("seg", DataType.INT64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        if self.client.has_collection(name):
            self.client.drop_collection(name)
        for kind in ("INVERTED", "STL_SORT"):  # as unibind: the scalar index this Milvus has
            params = self.client.prepare_index_params()
            params.add_index(field_name="vector", index_type="FLAT", metric_type="IP")
            params.add_index(field_name="seg", index_type=kind)
            try:
                self.client.create_collection(name, schema=schema, index_params=params, consistency_level="Strong")
                break
            except Exception:  # noqa: BLE001 - Milvus 2.3 refuses INVERTED
                if kind == "STL_SORT":
                    raise
        return time.perf_counter() - t

    def bulk(self, vectors: np.ndarray) -> float:
        """Seconds to make a fresh collection and insert ``vectors`` into it (what a new index costs at least)."""
        return self.create() + self.insert(vectors)

    def insert(self, vectors: np.ndarray) -> float:
        """Seconds to insert ``vectors`` as one segment (5,000 rows per call, as unibind) and make them durable."""
        self.token += 1
        t = time.perf_counter()
        for s in range(0, len(vectors), 5_000):
            part = vectors[s : s + 5_000]
            self.client.insert(self.name, [{"key": s + j, "seg": self.token, "vector": v} for j, v in enumerate(part)])
        if self.lite:
            self.client.flush(self.name)
        return time.perf_counter() - t

    def close(self) -> None:
        self.client.drop_collection(self.name)


def measure_writes(url: str | None, sizes: Sequence[int], publishes: int, batch: int, dim: int,
                   seed: int, vectors: str = "faiss") -> list[dict[str, Any]]:
    """One store per size, then ``publishes`` rounds that publish once into each store in turn (the machine's drift
    falls on every size alike); each round also times the bare FAISS writes beside them."""
    import unibind.indexer.store.ingest as ingest_module
    from unibind.indexer.index.data_home import DataHome
    from unibind.indexer.store.ingest import IngestConfig, ingest
    from unibind.schema import Database

    rng = np.random.default_rng(seed)
    publish = ingest_module._publish  # the index's part of a write: its segment, the commit, the upkeep
    spent: list[float] = []

    def timed_publish(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return publish(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - t0)

    on_milvus = vectors != "faiss"
    with contextlib.ExitStack() as stack:
        if vectors.rstrip(":") == "milvus-lite":  # a temp folder of its own
            folder = Path(tempfile.mkdtemp(prefix="unibind-writes-milvus-"))
            stack.callback(shutil.rmtree, folder, True)
            vectors = f"milvus-lite:{folder}"
        bare = BareMilvus(vectors, dim, f"bench_bare_{os.getpid()}") if on_milvus else None
        if bare is not None:
            stack.callback(bare.close)
        ingest_module._publish = timed_publish  # type: ignore[assignment]
        stack.callback(setattr, ingest_module, "_publish", publish)
        stores = []
        for n in sizes:
            db_url, home = stack.enter_context(store(url))
            db = Database(db_url, vectors=vectors)
            stack.callback(db.dispose)
            encoder = Precomputed(dim)
            base = unit(rng, n, dim)
            ingest(db, corpus(encoder, "base", base),
                   IngestConfig(name="base", encoder=encoder.spec, progress=n >= 100_000), home=home,
                   device=encoder.device, encoder=encoder)  # type: ignore[arg-type]
            bulk = {"ours": spent.pop(), "bare": bare.bulk(base) if bare is not None else None}
            clock = LockClock(db.engine)
            stack.callback(clock.close)
            folder = home / "bare"
            folder.mkdir(parents=True, exist_ok=True)
            stores.append({"n": n, "db": db, "home": home, "encoder": encoder, "clock": clock, "folder": folder,
                           "index_dir": DataHome(db, home).index_dir, "rows": [], "bare_new": [], "bare_all": [],
                           "bulk": bulk})
        for i in range(publishes):
            for st in stores:
                db, encoder = st["db"], st["encoder"]
                data = corpus(encoder, f"w{i}", unit(rng, batch, dim))
                if db.backend == "sqlite":  # earlier work's WAL pages are not this write's: copy them back first
                    with db.engine.connect() as conn:
                        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                files_before = _folder_bytes(st["index_dir"])
                before = _written()
                st["clock"].take()
                with PeakRss() as rss:
                    t = time.perf_counter()
                    ingest(db, data, IngestConfig(name=f"w{i}", encoder=encoder.spec, progress=False),
                           home=st["home"], device=encoder.device, encoder=encoder)  # type: ignore[arg-type]
                    seconds = time.perf_counter() - t
                held = st["clock"].take()
                st["rows"].append({"seconds": seconds, "bytes": _written() - before, "rss": rss.grew,
                                   "index_bytes": _folder_bytes(st["index_dir"]) - files_before,
                                   "lock": max(held) if held else 0.0, "index_s": spent.pop()})
                new = unit(rng, batch, dim)
                st["bare_new"].append(bare.insert(new) if bare is not None else bare_write(new, st["folder"]))
            if i < 3 and not on_milvus:  # what every write cost before segments: the whole index written again
                for st in stores:
                    st["bare_all"].append(bare_write(unit(rng, st["n"] + batch, dim), st["folder"]))
        return [{"n": st["n"], "rows": st["rows"], "bare_new": median(st["bare_new"]),
                 "bare_all": median(st["bare_all"]) if st["bare_all"] else float("nan"), "bulk": st["bulk"]}
                for st in stores]


def _folder_bytes(folder: Path) -> int:
    """Bytes in the index folder's files: what a write added to the index (its segment, less what went)."""
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) if folder.is_dir() else 0


# -- what segments cost readers ------------------------------------------------------------------------
def measure_search(url: str | None, n: int, dim: int, seed: int, repeats: int = 31) -> dict[str, Any]:
    from sqlalchemy import select

    from unibind.indexer.index.compaction import compact
    from unibind.indexer.store.contents import description_index
    from unibind.indexer.store.ingest import IngestConfig, ingest
    from unibind.retrieval.search.cross_modal import CrossModalSearch
    from unibind.schema import Database, Space

    rng = np.random.default_rng(seed)
    with store(url) as (db_url, home):
        db = Database(db_url)
        encoder = Precomputed(dim)
        device = encoder.device
        vectors = unit(rng, n, dim)
        parts = np.array_split(np.arange(n), SEGMENTS)
        ingest(db, corpus(encoder, "s0", vectors[parts[0]]), IngestConfig(name="s0", encoder=encoder.spec,
                                                                          progress=False),
               home=home, device=device, encoder=encoder)  # type: ignore[arg-type]
        with db.session() as s:
            space = s.scalars(select(Space)).one()
        index = description_index(db, space, home, device)
        # the other 15 segments are published as writes publish them, without the compaction that would merge them
        # (the bound the policy allows, held here on purpose)
        import unibind.indexer.store.ingest as ingest_module

        upkeep = ingest_module.tidy
        ingest_module.tidy = lambda *a, **k: None  # type: ignore[assignment]
        try:
            for i, part in enumerate(parts[1:], start=1):
                ingest(db, corpus(encoder, f"s{i}", vectors[part]), IngestConfig(name=f"s{i}", encoder=encoder.spec,
                                                                                  progress=False),
                       home=home, device=device, encoder=encoder)  # type: ignore[arg-type]
        finally:
            ingest_module.tidy = upkeep
        queries = {b: unit(rng, b, dim) for b in (1, 100)}
        segmented = CrossModalSearch(db, home, device, space, "descriptions")  # held: its segments stay loaded
        n_segments = segmented.store.n_segments
        compact(index, full=True)
        one = CrossModalSearch(db, home, device, space, "descriptions")
        same = all(np.array_equal(one.store.search(q, 10)[1], segmented.store.search(q, 10)[1])
                   for q in queries.values())
        seg_times: dict[int, float] = {}
        one_times: dict[int, float] = {}
        for b, q in queries.items():  # A/B, alternating: the machine's drift falls on both alike
            a_times, b_times = [], []
            for _ in range(repeats):
                for view, times in ((segmented, a_times), (one, b_times)):
                    t = time.perf_counter()
                    view.store.search(q, 10)
                    times.append(time.perf_counter() - t)
            seg_times[b], one_times[b] = median(a_times[1:]), median(b_times[1:])  # the first of each warms up
        db.dispose()
    return {"n": n, "segments": n_segments, "seg": seg_times, "one": one_times, "same": same}


# -- mixed -----------------------------------------------------------------------------------------------
def mixed(url: str | None, n: int, dim: int, seconds: float, seed: int, writers: int = 4, readers: int = 8,
          per_corpus: int = 40) -> dict[str, Any]:
    from sqlalchemy import func, select

    from unibind.indexer.store.contents import find_corpus
    from unibind.indexer.store.ingest import IngestConfig, ingest
    from unibind.indexer.index.readers import ReaderLeaseHolder, VersionGone
    from unibind.indexer.store.removal import delete_corpus
    from unibind.retrieval.search.cross_modal import CrossModalSearch
    from unibind.schema import Corpus, CorpusStatus, Database, Description, Space
    from unibind.schema.versions import corpus_visible

    rng = np.random.default_rng(seed)
    with store(url) as (db_url, home):
        db = Database(db_url)
        encoder = Precomputed(dim)
        device = encoder.device
        ingest(db, corpus(encoder, "base", unit(rng, n, dim)), IngestConfig(name="base", encoder=encoder.spec,
                                                                             progress=False),
               home=home, device=device, encoder=encoder)  # type: ignore[arg-type]
        with db.session() as s:
            space = s.scalars(select(Space)).one()
        stop = threading.Event()
        lock = threading.Lock()
        failures: list[str] = []
        published: set[str] = set()
        deleted: set[str] = set()
        counts = {"writes": 0, "deletes": 0, "reads": 0, "checked": 0}
        pool = {f"m{w}-{i}": unit(np.random.default_rng(seed + 1000 * w + i), per_corpus, dim)
                for w in range(writers) for i in range(400)}
        for name, vecs in pool.items():
            corpus(encoder, name, vecs, per_class=10)

        def writer(w: int) -> None:
            r = random.Random(seed + w)
            i = 0
            mine: list[str] = []
            while not stop.is_set():
                try:
                    if mine and r.random() < 0.3:
                        name = mine.pop(r.randrange(len(mine)))
                        with db.session() as s:
                            cid = find_corpus(s, name, space).id
                        delete_corpus(db, cid, home, device)
                        with lock:
                            deleted.add(name)
                            counts["deletes"] += 1
                    else:
                        name = f"m{w}-{i}"
                        i += 1
                        ingest(db, corpus(encoder, name, pool[name], per_class=10),
                               IngestConfig(name=name, encoder=encoder.spec, progress=False), home=home, device=device,
                               encoder=encoder)  # type: ignore[arg-type]
                        mine.append(name)
                        with lock:
                            published.add(name)
                            counts["writes"] += 1
                except Exception as e:  # noqa: BLE001 - counted: the run must have none
                    with lock:
                        failures.append(f"writer {w}: {type(e).__name__}: {e}")

        def reader(j: int) -> None:
            q = unit(np.random.default_rng(seed + 99 + j), 2, dim)
            with ReaderLeaseHolder(db) as lease:  # as a service does: the vacuum keeps what its version sees
                while not stop.is_set():
                    read_once(j, q, lease)

        def read_once(j: int, q: np.ndarray, lease: ReaderLeaseHolder) -> None:
            try:
                search = CrossModalSearch(db, home, device, space, "descriptions")
                v = search.version
                try:
                    lease.hold(v)
                except VersionGone:
                    return  # the vacuum passed v before the lease was taken: the next round reads a newer one
                hits = search.search(q, 20)
                with db.session() as s:  # what version v sees: every corpus whole, and the exact answer
                    seen = dict(s.execute(select(Corpus.id, Corpus.n_descriptions)
                                          .where(Corpus.space_id == space.id, corpus_visible(v))).all())
                    stored = dict(s.execute(select(Corpus.id, func.count(Description.id))
                                            .join(Corpus, Description.corpus_id == Corpus.id)
                                            .where(Corpus.space_id == space.id, corpus_visible(v))
                                            .group_by(Corpus.id)).all())
                    rows = s.execute(select(Description.id, Description.vector).join(Corpus)
                                     .where(Corpus.space_id == space.id, corpus_visible(v))).all()
                if search.version != v:
                    return  # it refreshed (the vacuum passed v): checked on its next round
                whole = seen == stored and search.store.ntotal == sum(seen.values())
                ids = np.array([r[0] for r in rows], dtype=np.int64)
                vecs = np.stack([np.frombuffer(r[1], dtype="<f4") for r in rows])
                sims = q @ vecs.T
                exact = [ids[np.lexsort((ids, -row))][:20].tolist() for row in sims]
                if not whole or [[h.id for h in row] for row in hits] != exact:
                    with lock:
                        failures.append(f"reader {j}: version {v} answered other than its rows")
                with lock:
                    counts["reads"] += 1
                    counts["checked"] += 1
            except Exception as e:  # noqa: BLE001
                with lock:
                    failures.append(f"reader {j}: {type(e).__name__}: {e}")

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
        threads += [threading.Thread(target=reader, args=(j,)) for j in range(readers)]
        for t in threads:
            t.start()
        time.sleep(seconds)  # the run's length is the measurement itself, not a wait for an event
        stop.set()
        for t in threads:
            t.join()
        with db.session() as s:
            there = set(s.scalars(select(Corpus.name).where(Corpus.status == CorpusStatus.COMPLETE)))
        lost = sorted((published - deleted) - there)
        ghosts = sorted((deleted & there))
        from unibind.indexer.store.contents import description_index

        check = description_index(db, space, home, device).verify()
        db.dispose()
    return {"n": n, "seconds": seconds, **counts, "failures": failures, "lost": lost, "ghosts": ghosts,
            "verify": check.ok, "segments": check.segments}


# -- a DELETE beside queries -----------------------------------------------------------------------------
def delete_under_load(n: int, dim: int, seed: int, clients: int = 4, idle_s: float = 10.0) -> dict[str, Any]:
    """A real ``unibind serve`` over a store of ``n`` description vectors (random, in the MiniLM space) and a
    1,000-vector corpus ``victim``: ``clients`` threads send ``POST /v1/search`` back to back; p99 latency while
    nothing else happens, then while ``DELETE /v1/corpora/victim`` runs (from its request until the service has
    moved to the new catalog, and 2 s after)."""
    import httpx

    from bench.load import Server, free_port, stop, unibind_cmd, wait_ready
    from unibind.indexer.store.ingest import IngestConfig, ingest
    from unibind.schema import Database

    rng = np.random.default_rng(seed)
    with store(None) as (db_url, home):
        db = Database(db_url)
        encoder = Precomputed(dim)
        encoder.spec = "minilm"  # the served space: queries are encoded by the real MiniLM
        for name, count in (("big", n), ("victim", 1000)):
            ingest(db, corpus(encoder, name, unit(rng, count, dim)), IngestConfig(name=name, encoder="minilm",
                                                                                   progress=False),
                   home=home, device=encoder.device, encoder=encoder)  # type: ignore[arg-type]
        db.dispose()
        port = free_port()
        log_path = home.parent / "server.log"
        with open(log_path, "wb") as out:
            proc = subprocess.Popen([*unibind_cmd(), "--db", db_url, "--home", str(home), "serve", "--host",
                                     "127.0.0.1", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        server = Server(f"http://127.0.0.1:{port}", [], "sqlite", proc, log_path)
        samples: list[tuple[float, float]] = []  # (sent, ms)
        errors = [0]
        stop_flag = threading.Event()
        try:
            wait_ready(server)

            def client(i: int) -> None:
                texts = [f"a query about thing {i}-{j}" for j in range(50)]
                with httpx.Client(base_url=server.url, timeout=120.0) as http:
                    j = 0
                    while not stop_flag.is_set():
                        t = time.perf_counter()
                        r = http.post("/v1/search", json={"texts": [texts[j % 50]], "target": "descriptions",
                                                          "k": 10})
                        samples.append((t, 1000 * (time.perf_counter() - t)))
                        errors[0] += r.status_code != 200
                        j += 1

            threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
            for t in threads:
                t.start()
            time.sleep(2.0)  # the clients' first requests load the search index: not part of either window
            idle_from = time.perf_counter()
            time.sleep(idle_s)  # the idle window is a length of time to measure over, not a wait for an event
            deleting = time.perf_counter()
            r = httpx.delete(f"{server.url}/v1/corpora/victim", timeout=300.0)
            deleted = time.perf_counter()
            time.sleep(2.0)
            stop_flag.set()
            for t in threads:
                t.join()
        finally:
            stop(proc, "server")
        if r.status_code != 200:
            raise RuntimeError(f"DELETE answered {r.status_code}: {r.text}")
    idle = [ms for t, ms in samples if idle_from <= t < deleting]
    during = [ms for t, ms in samples if deleting <= t < deleted + 2.0]
    return {"n": n, "idle_p99": float(np.percentile(idle, 99)), "idle_p50": float(np.percentile(idle, 50)),
            "during_p99": float(np.percentile(during, 99)), "during_n": len(during),
            "delete_s": deleted - deleting, "errors": errors[0]}


# -- the run ---------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--publishes", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--db", help="a PostgreSQL URL (default: SQLite in a temp folder)")
    parser.add_argument("--mixed-seconds", type=float, default=60.0, help="0: no mixed run")
    parser.add_argument("--no-search", action="store_true")
    parser.add_argument("--service-vectors", type=int, default=100_000,
                        help="the store a served DELETE runs beside queries in (0: not measured)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vectors", default="faiss",
                        help="faiss (default), milvus-lite (a temp folder), milvus-lite:PATH or milvus://HOST:PORT")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sizes = [int(s) for s in args.sizes.split(",")]
    backend = "PostgreSQL" if args.db else "SQLite"
    on_milvus = args.vectors != "faiss"
    if on_milvus:
        backend += " + " + ("milvus-lite" if args.vectors.startswith("milvus-lite") else args.vectors)
        args.no_search, args.mixed_seconds, args.service_vectors = True, 0, 0  # those runs are FAISS's
    when, where, cmd = now(), machine(), command_line("bench/writes.py")

    results = measure_writes(args.db, sizes, args.publishes, args.batch, args.dim, args.seed, args.vectors)
    base_s = median([r["seconds"] for r in results[0]["rows"]])
    base_index = median([r["index_s"] for r in results[0]["rows"]])
    columns = ("store", "vectors", "publish s", f"÷ {sizes[0] // 1000}k", "index part s", f"index ÷ {sizes[0] // 1000}k",
               "lock ms", "bytes written", "index bytes added", "peak RSS MB", "bare write s", "÷ bare",
               "whole rewrite s")
    table = []
    for r in results:
        s = median([x["seconds"] for x in r["rows"]])
        ix = median([x["index_s"] for x in r["rows"]])
        table.append((backend, r["n"], s, s / base_s, ix, ix / base_index, 1000 * median([x["lock"] for x in r["rows"]]),
                      int(median([x["bytes"] for x in r["rows"]])), int(median([x["index_bytes"] for x in r["rows"]])),
                      median([x["rss"] for x in r["rows"]]) / 2**20, r["bare_new"], s / r["bare_new"], r["bare_all"]))
    print(text_table(columns, table))
    rows_md = [(when, where, *row, args.batch, cmd) for row in table]
    md_columns = ("date", "machine", *columns, "batch", "command")
    bulk_rows = []
    if on_milvus:
        bcol = ("store", "vectors", "bulk ingest index part s", "bare insert s", "throughput ratio (bare ÷ ours)")
        bulk_rows = [(backend, r["n"], r["bulk"]["ours"], r["bulk"]["bare"], r["bulk"]["bare"] / r["bulk"]["ours"])
                     for r in results]
        print()
        print(text_table(bcol, bulk_rows))

    search_rows = []
    if not args.no_search:
        sr = measure_search(args.db, sizes[-1], args.dim, args.seed)
        for b in (1, 100):
            search_rows.append((backend, sr["n"], sr["segments"], b, 1000 * sr["seg"][b], 1000 * sr["one"][b],
                                sr["seg"][b] / sr["one"][b], "yes" if sr["same"] else "NO"))
        scol = ("store", "vectors", "segments", "queries", "segmented ms", "one index ms", "ratio", "same hits")
        print()
        print(text_table(scol, search_rows))

    mixed_row = None
    if args.mixed_seconds > 0:
        m = mixed(args.db, sizes[0], args.dim, args.mixed_seconds, args.seed)
        mcol = ("store", "vectors", "seconds", "writes", "deletes", "reads checked", "failures", "lost writes",
                "verify", "segments at end")
        mixed_row = (backend, m["n"], m["seconds"], m["writes"], m["deletes"], m["checked"], len(m["failures"]),
                     len(m["lost"]) + len(m["ghosts"]), "ok" if m["verify"] else "STALE", m["segments"])
        print()
        print(text_table(mcol, [mixed_row]))
        for f in m["failures"][:10]:
            print("  ", f)
    delete_row = None
    if args.service_vectors > 0:
        d = delete_under_load(args.service_vectors, args.dim, args.seed)
        dcol = ("store", "vectors", "idle p50 ms", "idle p99 ms", "p99 during DELETE ms", "queries during",
                "DELETE s", "errors")
        delete_row = ("SQLite", d["n"], d["idle_p50"], d["idle_p99"], d["during_p99"], d["during_n"], d["delete_s"],
                      d["errors"])
        print()
        print(text_table(dcol, [delete_row]))
    if not args.no_append:
        append_rows(WRITE_SECTION, md_columns, rows_md)
        if bulk_rows:
            append_rows(BULK_SECTION, ("date", "machine", *bcol, "command"), [(when, where, *r, cmd) for r in bulk_rows])
        if delete_row is not None:
            append_rows(DELETE_SECTION, ("date", "machine", *dcol, "command"), [(when, where, *delete_row, cmd)])
        if search_rows:
            append_rows(SEARCH_SECTION, ("date", "machine", *scol, "command"),
                        [(when, where, *r, cmd) for r in search_rows])
        if mixed_row is not None:
            append_rows(MIXED_SECTION, ("date", "machine", *mcol, "command"), [(when, where, *mixed_row, cmd)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
