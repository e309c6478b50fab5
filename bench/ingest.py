"""Ingest throughput: whole ``ingest()`` vs. the encoder alone on the same texts, side by side.

    .venv/bin/python bench/ingest.py [--n 20000] [--repeats 3] [--backends sqlite,postgres]
                                     [--pg-url URL] [--device auto] [--no-append]

Data: the first N description strings of the builtin ``cupl-imagenet`` corpus (real ImageNet CuPL
descriptions and prompt templates). One MiniLM encoder is built and warmed once. Each repeat measures,
in this order: (a) ``encoder.encode_text(texts, batch_size=256)``; (b) the bare library call
``SentenceTransformer.encode(texts, batch_size=256)``; (c) for each backend, the whole ``ingest()`` call
into a fresh store (SQLite in a temp folder / a fresh PostgreSQL schema, and a fresh temp home for the
FAISS files; creating and migrating the database is outside the timed region). The ratio is whole
ingest time ÷ encoder-only time of the same repeat; medians are reported. Prints a table and appends
one row per backend to BENCHMARKS.md (section "ingest (bench/ingest.py)") unless --no-append.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repo root first

from bench.report import append_rows, command_line, machine, median, now, text_table  # noqa: E402

log = logging.getLogger("bench.ingest")

SECTION = "ingest (bench/ingest.py)"
TARGET_RATIO = 1.15
BATCH_SIZE = 256
BACKENDS = ("sqlite", "postgres")
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MD_COLUMNS = (
    "date",
    "machine",
    "backend",
    "N",
    "repeats",
    "ingest desc/s (median)",
    "encoder-only desc/s (median)",
    "ratio ingest÷encoder (median)",
    f"target ≤ {TARGET_RATIO}",
    "command",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20000, help="descriptions to ingest (default 20000)")
    p.add_argument("--repeats", type=int, default=3, help="measurements of each kind (default 3)")
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated: sqlite, postgres")
    p.add_argument("--pg-url", default=DEFAULT_PG_URL, help=f"PostgreSQL server (default {DEFAULT_PG_URL})")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N (default $UNIBIND_DEVICE or auto)")
    p.add_argument("--no-append", action="store_true", help="print only; do not append to BENCHMARKS.md")
    args = p.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in args.backends if b not in BACKENDS]
    if unknown or not args.backends:
        p.error(f"--backends: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(BACKENDS)}")
    if args.n < 1 or args.repeats < 1:
        p.error("--n and --repeats must be >= 1")
    return args


def load_texts(n: int):  # type: ignore[no-untyped-def]
    """The first ``n`` records of the builtin CuPL corpus, as a CorpusData, and their texts."""
    from unibind.indexer.readers.builtin import load_builtin

    data = load_builtin("cupl-imagenet")
    if len(data.records) < n:
        raise SystemExit(
            f"--n {n}: the builtin cupl-imagenet corpus has only {len(data.records)} distinct descriptions; use --n <= {len(data.records)}"
        )
    records = data.records[:n]
    subset = dataclasses.replace(data, records=records, n_duplicates=0, path=f"{data.path}[:{n}]")
    log.info("data: %d descriptions of %d categories from %s", n, len(subset.categories), data.path)
    return subset, [r.text for r in records]


class PgServer:
    """Creates a fresh schema per store on the server and drops it afterwards."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        from unibind.schema.database import resolve_database_url

        self._text, self._make_url = text, make_url
        self.url = resolve_database_url(url)
        self.admin = create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            with self.admin.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as e:  # noqa: BLE001 - any failure here means the server cannot be used
            self.admin.dispose()
            raise SystemExit(
                f"PostgreSQL at {make_url(self.url).render_as_string(hide_password=True)} is not reachable: "
                f"{str(e).splitlines()[0]} (pass --pg-url, or --backends sqlite)"
            ) from e

    @contextmanager
    def fresh_schema(self) -> Iterator[str]:
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as conn:
            conn.execute(self._text(f'CREATE SCHEMA "{schema}"'))
        try:
            url = self._make_url(self.url).update_query_dict({"options": f"-csearch_path={schema}"})
            yield url.render_as_string(hide_password=False)
        finally:
            with self.admin.connect() as conn:
                conn.execute(self._text(f'DROP SCHEMA "{schema}" CASCADE'))

    def dispose(self) -> None:
        self.admin.dispose()


@contextmanager
def fresh_store(backend: str, pg: PgServer | None) -> Iterator[tuple[object, Path]]:
    """A migrated, empty Database and an empty home folder; both removed afterwards."""
    from unibind.schema import Database

    tmp = Path(tempfile.mkdtemp(prefix=f"unibind-bench-{backend}-"))
    try:
        if backend == "sqlite":
            db = Database(f"sqlite:///{tmp / 'unibind.db'}")
            try:
                yield db, tmp / "home"
            finally:
                db.dispose()
        else:
            assert pg is not None
            with pg.fresh_schema() as url:
                db = Database(url)
                try:
                    yield db, tmp / "home"
                finally:
                    db.dispose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "faiss.loader", "sentence_transformers"):  # per-store migration and load chatter
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = parse_args(argv)

    import torch

    from unibind.indexer.runtime.device import select_device
    from unibind.indexer.encoders.factory import build_encoder
    from unibind.indexer.store.ingest import IngestConfig, ingest
    from unibind.schema.settings import Settings

    pg = PgServer(args.pg_url) if "postgres" in args.backends else None  # fail fast, before the model loads
    data, texts = load_texts(args.n)
    device = select_device(Settings.resolve(device=args.device).device)  # --device, else $UNIBIND_DEVICE, else auto
    encoder = build_encoder("minilm", device)
    model = encoder._model  # the bare sentence-transformers model, for the reference timing
    host = machine()
    log.info("machine: %s; device: %s; torch threads: %d", host, device.describe(), torch.get_num_threads())

    # warm up both paths (first-call allocations, lazy kernels), untimed
    encoder.encode_text(texts[:BATCH_SIZE], batch_size=BATCH_SIZE, progress=False)
    model.encode(texts[:BATCH_SIZE], batch_size=BATCH_SIZE, show_progress_bar=False)

    enc_s: list[float] = []
    lib_s: list[float] = []
    ingest_s: dict[str, list[float]] = {b: [] for b in args.backends}
    ingest_enc_s: dict[str, list[float]] = {b: [] for b in args.backends}
    try:
        for rep in range(1, args.repeats + 1):
            enc_s.append(timed(lambda: encoder.encode_text(texts, batch_size=BATCH_SIZE, progress=False)))
            lib_s.append(timed(lambda: model.encode(texts, batch_size=BATCH_SIZE, show_progress_bar=False)))
            log.info("repeat %d/%d: encoder-only %.2fs, library %.2fs", rep, args.repeats, enc_s[-1], lib_s[-1])
            for backend in args.backends:
                with fresh_store(backend, pg) as (db, home):
                    config = IngestConfig(name=f"bench-{rep}", encoder="minilm", batch_size=BATCH_SIZE, progress=False)
                    t = time.perf_counter()
                    report = ingest(db, data, config, home=home, device=device, encoder=encoder)  # type: ignore[arg-type]
                    seconds = time.perf_counter() - t
                if report.n_descriptions != args.n:
                    raise RuntimeError(f"{backend}: ingest stored {report.n_descriptions} descriptions, expected {args.n}")
                ingest_s[backend].append(seconds)
                ingest_enc_s[backend].append(report.encode_seconds)
                log.info(
                    "repeat %d/%d: ingest %s %.2fs (its own: %.2fs, encoding %.2fs), ratio to encoder-only %.3f",
                    rep, args.repeats, backend, seconds, report.seconds, report.encode_seconds, seconds / enc_s[-1],
                )
    finally:
        if pg is not None:
            pg.dispose()

    n = args.n
    enc_med, lib_med = median(enc_s), median(lib_s)
    rows, md_rows = [], []
    date, cmd = now(), command_line("bench/ingest.py")
    for backend in args.backends:
        ratio = median([i / e for i, e in zip(ingest_s[backend], enc_s)])
        ratio_lib = median([i / e for i, e in zip(ingest_s[backend], lib_s)])
        ing_med = median(ingest_s[backend])
        rows.append([
            backend, n, args.repeats, ing_med, n / ing_med, median(ingest_enc_s[backend]),
            enc_med, n / enc_med, n / lib_med, ratio, ratio_lib, "yes" if ratio <= TARGET_RATIO else "no",
        ])
        md_rows.append([
            date, host, backend, n, args.repeats, round(n / ing_med, 1), round(n / enc_med, 1), round(ratio, 3),
            "yes" if ratio <= TARGET_RATIO else "no", f"`{cmd}`",
        ])
    print(f"\ningest benchmark, {date}, {host}, {device.describe()}, medians of {args.repeats} repeat(s)")
    print(text_table(
        ["backend", "N", "repeats", "ingest s", "ingest desc/s", "ingest encode s", "encoder s", "encoder desc/s",
         "library desc/s", "ratio ingest÷encoder", "ratio ingest÷library", f"≤ {TARGET_RATIO}"],
        rows,
    ))
    if not args.no_append:
        append_rows(SECTION, MD_COLUMNS, md_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
