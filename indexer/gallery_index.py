"""The FAISS file of one modality's gallery: derived state, stamped, checked, rebuildable from the store.

Ids are item primary keys. Each file written gets an ``IndexFile`` row (kind ``items:<modality id>``) with
its count, id digest, file digest and size; loading compares that stamp with the store.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tqdm.auto import tqdm

from indexer.description_index import IndexCheck, StaleIndexError
from indexer.device import Device
from indexer.vector_store import DEFAULT_FACTORY, VectorStore, sha256_file
from indexer.vectors import from_bytes, ids_digest
from schema import Database, IndexFile, Item, Modality

log = logging.getLogger(__name__)

READ_CHUNK = 20_000


class GalleryIndex:
    """The gallery index of one (space, modality), bound to a database, a folder and a device."""

    def __init__(self, db: Database, modality: Modality, folder: Path, device: Device, space_dim: int) -> None:
        self.db = db
        self.modality_id = modality.id
        self.name = modality.name
        self.space_id = modality.space_id
        self.dim = space_dim
        self.folder = folder
        self.device = device
        self.kind = f"items:{modality.id}"
        self.path = folder / f"space-{modality.space_id}-items-{modality.name}.faiss"

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

    # -- what the store says ------------------------------------------------------------------------
    def record(self, session: Session) -> IndexFile | None:
        stmt = (
            select(IndexFile)
            .where(IndexFile.space_id == self.space_id, IndexFile.kind == self.kind)
            .order_by(IndexFile.id.desc())
            .limit(1)
        )
        return session.scalars(stmt).first()

    def count(self, session: Session) -> int:
        return int(session.scalar(select(func.count(Item.id)).where(Item.modality_id == self.modality_id)) or 0)

    def store_ids(self, session: Session) -> np.ndarray:
        return np.fromiter(session.scalars(select(Item.id).where(Item.modality_id == self.modality_id)), dtype=np.int64)

    def factory(self, session: Session) -> str:
        rec = self.record(session)
        return rec.factory if rec is not None else DEFAULT_FACTORY

    def _stamp_problems(self, session: Session, rec: IndexFile | None) -> list[str]:
        n = self.count(session)
        if rec is None:
            return [f"no index file has been recorded for the {self.name} gallery"] if n else []
        problems = []
        if rec.n_vectors != n:
            problems.append(f"file holds {rec.n_vectors} vectors, the store has {n} {self.name} items")
        if not self.path.is_file():
            problems.append(f"index file {self.path} is missing")
        elif self.path.stat().st_size != rec.file_size:
            problems.append(f"index file {self.path} has {self.path.stat().st_size} bytes, the record says {rec.file_size}")
        return problems

    # -- load, check ---------------------------------------------------------------------------------
    def load(self) -> VectorStore:
        """The checked index (StaleIndexError when it disagrees with the store); empty when there are no items."""
        with self.db.session() as session:
            rec = self.record(session)
            problems = self._stamp_problems(session, rec)
        if problems:
            raise StaleIndexError(f"{self.path}: " + "; ".join(problems) + " — run `unibind gallery rebuild`")
        if rec is None:
            return VectorStore.create(self.dim, self.device, DEFAULT_FACTORY)
        store = VectorStore.load(self.path, self.device, rec.factory)
        if store.ntotal != rec.n_vectors or store.dim != self.dim or ids_digest(store.ids()) != rec.ids_sha256:
            raise StaleIndexError(f"{self.path}: does not hold the {rec.n_vectors} vectors its record names "
                                  "— run `unibind gallery rebuild`")
        return store

    def verify(self) -> IndexCheck:
        with self.db.session() as session:
            rec = self.record(session)
            problems = self._stamp_problems(session, rec)
            ids = self.store_ids(session)
        n_file = None
        if rec is not None and self.path.is_file():
            if sha256_file(self.path) != rec.file_sha256:
                problems.append("file digest differs from the one recorded when it was written")
            try:
                store = VectorStore.load(self.path, self.device, rec.factory)
                n_file = store.ntotal
                if ids_digest(store.ids()) != ids_digest(ids):
                    problems.append("ids differ from the store's items")
            except ValueError as e:
                problems.append(str(e))
        return IndexCheck(path=self.path, n_store=int(ids.size), n_file=n_file, problems=problems)

    # -- write ---------------------------------------------------------------------------------------
    def save(self, session: Session, store: VectorStore) -> IndexFile:
        """Write ``store`` atomically and add its record to ``session`` (committed by the caller)."""
        digest, size = store.save(self.path)
        rec = IndexFile(space_id=self.space_id, kind=self.kind, path=str(self.path), factory=store.factory,
                        n_vectors=store.ntotal, ids_sha256=ids_digest(store.ids()), file_sha256=digest,
                        file_size=size, corpus_ids=[])
        session.add(rec)
        return rec

    def vectors(self, session: Session, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the modality's items from the store (all, or those in ``ids``), by id."""
        stmt = select(Item.id, Item.vector).where(Item.modality_id == self.modality_id).order_by(Item.id)
        if ids is not None:
            stmt = stmt.where(Item.id.in_([int(i) for i in ids]))
        id_parts, vec_parts = [], []
        total = self.count(session) if ids is None else len(ids)
        show = ids is None and total > 50_000
        with tqdm(total=total, desc=f"read {self.name} vectors", unit="vec", disable=not show, leave=False) as bar:
            for part in session.execute(stmt.execution_options(yield_per=READ_CHUNK)).partitions():
                id_parts.append(np.fromiter((r[0] for r in part), dtype=np.int64, count=len(part)))
                vec_parts.append(from_bytes([r[1] for r in part], self.dim))
                bar.update(len(part))
        if not id_parts:
            return np.empty(0, dtype=np.int64), np.empty((0, self.dim), dtype=np.float32)
        return np.concatenate(id_parts), np.concatenate(vec_parts)

    def build_from_store(self, factory: str | None = None) -> VectorStore:
        """A new index from the stored vectors (no encoding)."""
        with self.db.session() as session:
            factory = factory or self.factory(session)
            ids, vectors = self.vectors(session)
        store = VectorStore.create(self.dim, self.device, factory)
        if ids.size:
            store.train(vectors)
            store.add(ids, vectors)
        return store

    def rebuild(self, factory: str | None = None) -> IndexFile:
        with self.lock():
            store = self.build_from_store(factory)
            with self.db.transaction() as session:
                rec = self.save(session, store)
        log.info("rebuilt %s: %d vectors, factory %s", self.path, rec.n_vectors, rec.factory)
        return rec

    def current_or_rebuilt(self) -> VectorStore:
        """The checked index, or (when missing or stale) one rebuilt from the store; call under lock()."""
        try:
            return self.load()
        except (StaleIndexError, FileNotFoundError, ValueError) as e:
            log.warning("%s; rebuilding it from the stored vectors", e)
            return self.build_from_store()
