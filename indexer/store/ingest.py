"""Ingestion, staged reader → encoder → writer, joined by a small runner.

The corpus row is created hidden (status ``ingesting``, a temporary name, the name it will take, this process as
its owner); rows and vectors are written in chunks while the next chunk is encoded, and a heartbeat keeps the
lease. At the end the new vectors alone are written as a new segment of the space's index, outside any lock, and
one short commit that bumps the catalog version makes the corpus ``complete`` under its name and the segment live
(a replaced corpus is retired in the same commit: readers pinned to an older version still see it). A failed run removes its own rows (and the space only when this run created it and it holds nothing
else); a killed run leaves a hidden corpus that shows as ``interrupted`` and is removed by the next writer
(``unibind.indexer.store.contents.reap_abandoned``) or ``unibind index rebuild``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from tqdm.auto import tqdm

from unibind.indexer.store.centre_keys import invalidate_centres, prune_centres
from unibind.indexer.store.contents import description_index
from unibind.indexer.store.removal import delete_corpus_rows, drop_space_if_unused, reap_abandoned, retire_corpus
from unibind.indexer.store.vacuum import tidy
from unibind.indexer.readers.corpus import CorpusData, Record
from unibind.indexer.runtime.device import Device
from unibind.indexer.encoders.base import Encoder
from unibind.indexer.encoders.factory import build_encoder
from unibind.indexer.runtime.lease import Heartbeat, current_owner, describe_owner, is_alive
from unibind.indexer.index.data_home import DataHome
from unibind.indexer.index.places import check_factory
from unibind.indexer.runtime.vectors import to_bytes
from unibind.schema import Category, Corpus, CorpusStatus, Database, Description, Space
from unibind.schema.errors import Conflict, InvalidInput
from unibind.schema.store_state import bump_version, lock_catalog

log = logging.getLogger(__name__)

MAX_NAME_CHARS = 200
PENDING_PREFIX = "~ingesting-"
PROGRESS_MIN_RECORDS = 2_000
PROGRESS_BATCHES = 2  # encoder batches between progress updates
IN_CHUNK = 10_000


@dataclass(frozen=True)
class IngestConfig:
    name: str
    encoder: str
    source: str | None = None
    factory: str | None = None  # FAISS factory string; None keeps the space's current one (Flat when new)
    replace: bool = False  # replace a complete corpus of the same name
    batch_size: int = 256  # encoder batch
    chunk_size: int = 4096  # records encoded and written per step
    progress: bool | None = None  # None: a bar when the corpus is large

    def __post_init__(self) -> None:
        name = self.name.strip() if isinstance(self.name, str) else ""
        if not name or len(name) > MAX_NAME_CHARS or any(ord(c) < 32 for c in name) or name.startswith("~"):
            raise InvalidInput(
                f"corpus name {self.name!r} must be 1-{MAX_NAME_CHARS} printable characters, not starting with '~'"
            )
        if self.factory is not None and not 0 < len(self.factory) <= 200:
            raise InvalidInput(f"FAISS factory string must be 1-200 characters, got {len(self.factory)}")
        if self.batch_size < 1 or self.chunk_size < 1:
            raise InvalidInput("batch_size and chunk_size must be >= 1")


@dataclass(frozen=True)
class IngestReport:
    corpus_id: int
    name: str
    encoder: str
    n_descriptions: int
    n_duplicates: int
    n_categories: int
    seconds: float
    encode_seconds: float
    index_path: str  # where the published index is: a FAISS file, or a Milvus collection


def _space(session: Session, encoder: Encoder) -> tuple[Space, bool]:
    """The encoder's space, created when new (call under the catalog lock); (space, created here)."""
    space = session.scalars(select(Space).where(Space.encoder == encoder.spec)).first()
    if space is None:
        space = Space(encoder=encoder.spec, dim=encoder.dim)
        session.add(space)
        session.flush()
        return space, True
    if space.dim != encoder.dim:
        raise Conflict(f"space {encoder.spec!r} has dim {space.dim} but the encoder now gives {encoder.dim}")
    return space, False


def _category_ids(session: Session, names: list[str]) -> dict[str, int]:
    """Ids of the categories, created when new (call under the catalog lock, so two ingests cannot race)."""
    found: dict[str, int] = {}
    for start in range(0, len(names), IN_CHUNK):  # bounded IN-lists: SQLite and psycopg cap bind parameters
        stmt = select(Category.name, Category.id).where(Category.name.in_(names[start : start + IN_CHUNK]))
        found.update(dict(session.execute(stmt).all()))
    missing = [n for n in names if n not in found]
    if missing:
        rows = session.execute(insert(Category).returning(Category.id, sort_by_parameter_order=True), [{"name": n} for n in missing])
        found.update(zip(missing, rows.scalars()))
    return found


def _complete(session: Session, space_id: int, name: str) -> Corpus | None:
    stmt = select(Corpus).where(Corpus.space_id == space_id, Corpus.name == name, Corpus.status == CorpusStatus.COMPLETE)
    return session.scalars(stmt).first()


def _claim(session: Session, space: Space, name: str, replace: bool) -> None:
    """Refuse, with one clear message, an ingest whose name is taken or being ingested by a live process."""
    if _complete(session, space.id, name) is not None and not replace:
        raise Conflict(f"corpus {name!r} already exists in space {space.encoder!r}: use --replace (replace=true in an "
                       "upload), or delete it first")
    pending = session.scalars(select(Corpus).where(
        Corpus.space_id == space.id, Corpus.target_name == name, Corpus.status == CorpusStatus.INGESTING))
    for other in pending:
        if is_alive(other.owner, other.heartbeat_at):
            raise Conflict(f"corpus {name!r} is being ingested by {describe_owner(other.owner)} (started "
                           f"{other.created_at:%Y-%m-%d %H:%M:%S} UTC): wait for it, or stop it and run again")


class _Writer:
    """Writes one chunk of rows (with vector bytes) in its own transaction; returns their ids."""

    def __init__(self, db: Database, corpus_id: int, category_ids: dict[str, int]) -> None:
        self.db, self.corpus_id, self.category_ids = db, corpus_id, category_ids

    def __call__(self, records: list[Record], vectors: np.ndarray) -> np.ndarray:
        rows = [
            {
                "corpus_id": self.corpus_id,
                "category_id": self.category_ids[r.category],
                "text": r.text,
                "text_hash": r.text_hash,
                "meta": r.meta,
                "vector": to_bytes(v),
            }
            for r, v in zip(records, vectors)
        ]
        try:
            with self.db.transaction() as session:
                result = session.execute(insert(Description).returning(Description.id, sort_by_parameter_order=True), rows)
                return np.fromiter(result.scalars(), dtype=np.int64, count=len(rows))
        except IntegrityError as e:
            with self.db.session() as session:
                if session.get(Corpus, self.corpus_id) is None:
                    raise _lost() from e
            raise


def _lost() -> Conflict:
    return Conflict("this ingest's rows were removed by another process that took it for dead (no heartbeat for "
                    "longer than the lease: a suspended machine, or clocks out of step); run it again")


def ingest(
    db: Database, data: CorpusData, config: IngestConfig, *, home: Path, device: Device, encoder: Encoder | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> IngestReport:
    """Encode and store ``data`` as corpus ``config.name``; visible only once complete. ``progress(done, total)``
    is called every few encoder batches (``PROGRESS_BATCHES``) with the descriptions encoded so far."""
    t0 = time.perf_counter()
    if not data.records:
        raise InvalidInput(f"{data.path}: no descriptions to ingest")
    encoder = encoder or build_encoder(config.encoder, device)
    if config.factory:  # a bad factory string (for the --vectors place) fails before anything is encoded
        check_factory(DataHome(db, home), db.vectors, encoder.dim, config.factory)
    name = config.name.strip()
    reap_abandoned(db)  # the rows of ingests whose process died go before this one starts
    with db.transaction() as session:
        lock_catalog(session)  # spaces and categories are created by one writer at a time
        space, created = _space(session, encoder)
        if not created:
            description_index(db, space, home, device).check_place()  # before anything is encoded
        _claim(session, space, name, config.replace)
        corpus = Corpus(
            space_id=space.id,
            name=f"{PENDING_PREFIX}{uuid.uuid4().hex[:12]}",
            source=config.source,
            origin=data.path,
            file_sha256=data.file_sha256,
            status=CorpusStatus.INGESTING,
            n_duplicates=data.n_duplicates,
            n_categories=len(data.categories),
            target_name=name,
            owner=current_owner(),
            heartbeat_at=datetime.now(timezone.utc),
            created_space=created,
        )
        session.add(corpus)
        session.flush()
        corpus_id = corpus.id
        category_ids = _category_ids(session, data.categories)
    try:
        with Heartbeat(lambda: _beat(db, corpus_id)) as heartbeat:  # the lease lasts until the publish commits
            ids, vectors, encode_s = _run(db, data.records, encoder, _Writer(db, corpus_id, category_ids), config,
                                          progress)
            if heartbeat.lost.is_set():
                raise _lost()
            _publish(db, space, corpus_id, name, config.replace, ids, vectors, config.factory, home, device)
    except BaseException:
        _discard(db, corpus_id, space.id if created else None)
        raise
    index_path = description_index(db, space, home, device).location
    report = IngestReport(
        corpus_id=corpus_id,
        name=name,
        encoder=encoder.spec,
        n_descriptions=int(ids.size),
        n_duplicates=data.n_duplicates,
        n_categories=len(data.categories),
        seconds=time.perf_counter() - t0,
        encode_seconds=encode_s,
        index_path=index_path,
    )
    log.info("ingested %s: %d descriptions in %.1fs (%.1fs encoding)", name, report.n_descriptions, report.seconds, encode_s)
    return report


def _run(
    db: Database, records: list[Record], encoder: Encoder, writer: _Writer, config: IngestConfig,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Encode chunk i+1 while chunk i is written. Returns (ids, vectors, seconds spent encoding)."""
    ids_parts: list[np.ndarray] = []
    vec_parts: list[np.ndarray] = []
    encode_s = 0.0
    show = len(records) >= PROGRESS_MIN_RECORDS if config.progress is None else config.progress
    pending: Future[np.ndarray] | None = None
    # progress moves every few encoder batches (encoding is the slow part), not once per written chunk; a Ray
    # encoder gets whole chunks, which it spreads over its actors
    step = config.chunk_size if encoder.distributed else config.batch_size * PROGRESS_BATCHES
    encoded = 0

    def moved(n: int) -> None:
        nonlocal encoded
        encoded += n
        bar.update(n)
        if progress is not None:
            progress(encoded, len(records))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="unibind-writer") as pool, tqdm(
        total=len(records), desc="ingest", unit="desc", disable=not show
    ) as bar:
        for start in range(0, len(records), config.chunk_size):
            chunk = records[start : start + config.chunk_size]
            t = time.perf_counter()
            parts = []
            for at in range(0, len(chunk), step):
                texts = [r.text for r in chunk[at : at + step]]
                parts.append(encoder.encode_text(texts, batch_size=config.batch_size, progress=False))  # [n, d]
                moved(len(texts))
            vectors = np.concatenate(parts)  # [chunk, d]
            encode_s += time.perf_counter() - t
            if pending is not None:
                ids_parts.append(pending.result())
            pending = pool.submit(writer, chunk, vectors)
            vec_parts.append(vectors)
        if pending is not None:
            ids_parts.append(pending.result())
    return np.concatenate(ids_parts), np.concatenate(vec_parts), encode_s


def _beat(db: Database, corpus_id: int) -> bool:
    """Renew the ingest's lease; False when its rows are gone (another process took it for dead)."""
    with db.transaction() as session:
        result = session.execute(update(Corpus).where(Corpus.id == corpus_id, Corpus.status == CorpusStatus.INGESTING)
                                 .values(heartbeat_at=datetime.now(timezone.utc)))
        return bool(result.rowcount)


def _publish(
    db: Database,
    space: Space,
    corpus_id: int,
    name: str,
    replace: bool,
    ids: np.ndarray,
    vectors: np.ndarray,
    factory: str | None,
    home: Path,
    device: Device,
) -> None:
    """Write the corpus's own segment, then make the corpus and its segment visible (retiring the complete corpus of
    the same name when asked) in one short commit; compaction and the vacuum follow."""
    index = description_index(db, space, home, device)
    with db.session() as session:
        current = index.configured_factory(session)
    switch = bool(factory) and current is not None and index.place.check_factory(factory, None) != current
    built = index.build(ids, vectors, groups=[corpus_id], factory=factory)  # outside any lock
    with index.discarding(built), db.transaction() as session:
        version = bump_version(session)  # first: publishes run one at a time, and the checks below cannot race
        corpus = session.get(Corpus, corpus_id)
        if corpus is None or corpus.status is not CorpusStatus.INGESTING:
            raise _lost()
        old = _complete(session, space.id, name)
        if old is not None and not replace:
            raise Conflict(f"corpus {name!r} was published in space {space.encoder!r} by another process while "
                           "this ingest ran: replace it (--replace, or replace=true in an upload), or delete it "
                           "first")
        invalidate_centres(session, space.id, corpus_id)
        if old is not None:
            invalidate_centres(session, space.id, old.id)
            retire_corpus(session, old, version)
            index.remove_corpus(session, old.id, version)
        corpus.name = name
        corpus.status = CorpusStatus.COMPLETE
        corpus.n_descriptions = int(ids.size)
        corpus.published_version = version
        corpus.completed_at = datetime.now(timezone.utc)
        corpus.target_name = corpus.owner = corpus.heartbeat_at = None
        session.flush()
        prune_centres(session, space.id)
        index.publish(session, built, version)
    if switch:  # --factory names another index type: the whole index is rebuilt as that type
        log.info("switching the description index of %s from %s to %s", space.encoder, current, factory)
        index.rebuild(factory)
    tidy(db, home, device, [index])


def _discard(db: Database, corpus_id: int, created_space: int | None) -> None:
    """Best effort, after a failure: remove this ingest's own rows (never a published corpus), and the space only
    when this ingest created it and nothing else is in it."""
    try:
        with db.transaction() as session:
            lock_catalog(session)
            corpus = session.get(Corpus, corpus_id)
            if corpus is not None and corpus.status is CorpusStatus.INGESTING:
                delete_corpus_rows(session, corpus_id)
                session.flush()
            if created_space is not None:
                drop_space_if_unused(session, created_space)
    except Exception as e:  # the original error matters more; the rows stay hidden and the next writer removes them
        log.warning("could not remove the rows of the failed ingest (corpus %d): %s", corpus_id, e)
