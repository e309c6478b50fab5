"""The FAISS file of a space's descriptions: derived state, stamped, checked, rebuildable from the store.

Only descriptions of *complete* corpora are in the file. Every file written gets an ``IndexFile`` row
(what it holds: corpora, id digest, count, file digest and size); loading compares that stamp with the
store, and ``verify`` also re-hashes the file and re-reads its ids.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session
from tqdm.auto import tqdm

from indexer.device import Device
from indexer.vector_store import DEFAULT_FACTORY, VectorStore, sha256_file
from indexer.vectors import from_bytes, ids_digest
from schema import Corpus, CorpusStatus, Database, Description, IndexFile, Space

log = logging.getLogger(__name__)

KIND = "descriptions"
REBUILD_CHUNK = 20_000


class StaleIndexError(RuntimeError):
    """The FAISS file does not hold what the store says it should."""


def index_dir(home: Path, db: Database) -> Path:
    """Index files live under ``$UNIBIND_HOME/indexes/<database key>/``: one folder per database."""
    url = db.url.render_as_string(hide_password=True)
    return home / "indexes" / hashlib.sha256(url.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class IndexCheck:
    path: Path
    n_store: int  # descriptions of complete corpora in the store
    n_file: int | None  # vectors in the file (None when it could not be read)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class DescriptionIndex:
    """The description index of one space, bound to a database, a folder and a device."""

    def __init__(self, db: Database, space: Space, folder: Path, device: Device) -> None:
        self.db = db
        self.space_id = space.id
        self.dim = space.dim
        self.folder = folder
        self.device = device
        self.path = folder / f"space-{space.id}-{KIND}.faiss"

    @contextmanager
    def lock(self) -> Iterator[None]:
        """An exclusive lock for read-modify-write of the file (one writer at a time)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f"{self.path.name}.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # -- what the store says ------------------------------------------------------------------
    def record(self, session: Session) -> IndexFile | None:
        stmt = (
            select(IndexFile)
            .where(IndexFile.space_id == self.space_id, IndexFile.kind == KIND)
            .order_by(IndexFile.id.desc())
            .limit(1)
        )
        return session.scalars(stmt).first()

    def complete_corpora(self, session: Session) -> dict[int, int]:
        """{corpus id: description count} of the space's complete corpora."""
        stmt = select(Corpus.id, Corpus.n_descriptions).where(
            Corpus.space_id == self.space_id, Corpus.status == CorpusStatus.COMPLETE
        )
        return {cid: n for cid, n in session.execute(stmt)}

    def _complete_ids(self, session: Session) -> np.ndarray:
        stmt = (
            select(Description.id)
            .join(Corpus, Description.corpus_id == Corpus.id)
            .where(Corpus.space_id == self.space_id, Corpus.status == CorpusStatus.COMPLETE)
        )
        return np.fromiter(session.scalars(stmt), dtype=np.int64)

    def factory(self, session: Session) -> str:
        rec = self.record(session)
        return rec.factory if rec is not None else DEFAULT_FACTORY

    # -- load, check ----------------------------------------------------------------------------
    def _stamp_problems(self, session: Session, rec: IndexFile | None) -> list[str]:
        corpora = self.complete_corpora(session)
        if rec is None:
            return ["no index file has been recorded for this space"] if corpora else []
        problems = []
        if sorted(rec.corpus_ids) != sorted(corpora):
            problems.append(f"file holds corpora {sorted(rec.corpus_ids)}, the store has complete corpora {sorted(corpora)}")
        if rec.n_vectors != sum(corpora.values()):
            problems.append(f"file holds {rec.n_vectors} vectors, the store has {sum(corpora.values())} descriptions")
        if not self.path.is_file():
            problems.append(f"index file {self.path} is missing")
        elif self.path.stat().st_size != rec.file_size:
            problems.append(f"index file {self.path} has {self.path.stat().st_size} bytes, the record says {rec.file_size}")
        return problems

    def load(self) -> VectorStore:
        """Load the file after checking its stamp against the store; StaleIndexError if they disagree.

        A space with no complete corpus yields an empty index.
        """
        with self.db.session() as session:
            rec = self.record(session)
            problems = self._stamp_problems(session, rec)
            factory = rec.factory if rec is not None else DEFAULT_FACTORY
        if problems:
            raise StaleIndexError(f"{self.path}: " + "; ".join(problems) + " — run `unibind index rebuild`")
        if rec is None:
            return VectorStore.create(self.dim, self.device, factory)
        store = VectorStore.load(self.path, self.device, factory)
        if store.ntotal != rec.n_vectors or store.dim != self.dim or ids_digest(store.ids()) != rec.ids_sha256:
            raise StaleIndexError(
                f"{self.path}: holds {store.ntotal} vectors of dim {store.dim}, not the {rec.n_vectors} of dim "
                f"{self.dim} with the ids its record names — run `unibind index rebuild`"
            )
        return store

    def verify(self) -> IndexCheck:
        """The full check: stamp, file digest, and the exact id set against the store."""
        with self.db.session() as session:
            rec = self.record(session)
            problems = self._stamp_problems(session, rec)
            store_ids = self._complete_ids(session)
        n_file = None
        if rec is not None and self.path.is_file():
            if sha256_file(self.path) != rec.file_sha256:
                problems.append("file digest differs from the one recorded when it was written")
            try:
                store = VectorStore.load(self.path, self.device, rec.factory)
                n_file = store.ntotal
                if ids_digest(store.ids()) != ids_digest(store_ids):
                    missing = np.setdiff1d(store_ids, store.ids()).size
                    extra = np.setdiff1d(store.ids(), store_ids).size
                    problems.append(f"ids differ from the store: {missing} missing, {extra} not in any complete corpus")
            except ValueError as e:
                problems.append(str(e))
        return IndexCheck(path=self.path, n_store=int(store_ids.size), n_file=n_file, problems=problems)

    # -- write ----------------------------------------------------------------------------------
    def save(self, session: Session, store: VectorStore, corpus_ids: list[int]) -> IndexFile:
        """Write ``store`` atomically and add its record to ``session`` (committed by the caller)."""
        ids = store.ids()
        digest, size = store.save(self.path)
        rec = IndexFile(
            space_id=self.space_id,
            kind=KIND,
            path=str(self.path),
            factory=store.factory,
            n_vectors=store.ntotal,
            ids_sha256=ids_digest(ids),
            file_sha256=digest,
            file_size=size,
            corpus_ids=sorted(corpus_ids),
        )
        session.add(rec)
        return rec

    def build_from_store(
        self, factory: str | None = None, *, exclude_corpus: int | None = None, progress: bool | None = None
    ) -> VectorStore:
        """A new index from the stored vectors of complete corpora (no encoding), less ``exclude_corpus``."""
        with self.db.session() as session:
            factory = factory or self.factory(session)
            n = sum(self.complete_corpora(session).values())
            store = VectorStore.create(self.dim, self.device, factory)
            stmt = (
                select(Description.id, Description.vector)
                .join(Corpus, Description.corpus_id == Corpus.id)
                .where(Corpus.space_id == self.space_id, Corpus.status == CorpusStatus.COMPLETE)
                .order_by(Description.id)
                .execution_options(yield_per=REBUILD_CHUNK)
            )
            if exclude_corpus is not None:
                stmt = stmt.where(Corpus.id != exclude_corpus)
            ids_parts, vec_parts = [], []
            with tqdm(total=n, desc="read vectors", unit="vec", disable=not (progress or (progress is None and n > 50_000)), leave=False) as bar:
                for part in session.execute(stmt).partitions():
                    ids_parts.append(np.fromiter((r[0] for r in part), dtype=np.int64, count=len(part)))
                    vec_parts.append(from_bytes([r[1] for r in part], self.dim))
                    bar.update(len(part))
        if ids_parts:
            ids, vectors = np.concatenate(ids_parts), np.concatenate(vec_parts)
            store.train(vectors)
            store.add(ids, vectors)
        return store

    def rebuild(self, factory: str | None = None, *, progress: bool | None = None) -> IndexFile:
        """Rebuild the file from the store's vectors alone and record it."""
        with self.lock():
            store = self.build_from_store(factory, progress=progress)
            with self.db.transaction() as session:
                rec = self.save(session, store, list(self.complete_corpora(session)))
            log.info("rebuilt %s: %d vectors, factory %s", self.path, rec.n_vectors, rec.factory)
            return rec

    def without_corpus(self, corpus_id: int) -> VectorStore:
        """The current index less one corpus's vectors (removed, or rebuilt without them when the index
        type cannot remove ids); call under lock()."""
        store = self.current_or_rebuilt()
        with self.db.session() as session:
            ids = np.fromiter(session.scalars(select(Description.id).where(Description.corpus_id == corpus_id)), dtype=np.int64)
        if not store.remove(ids):
            store = self.build_from_store(store.factory, exclude_corpus=corpus_id)
        return store

    def current_or_rebuilt(self) -> VectorStore:
        """The checked index, or (when missing or stale) one rebuilt from the store; call under lock()."""
        try:
            return self.load()
        except (StaleIndexError, FileNotFoundError, ValueError) as e:
            log.warning("%s; rebuilding it from the stored vectors", e)
            return self.build_from_store()
