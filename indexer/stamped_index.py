"""A FAISS file that is derived state: stamped with what it holds, checked against the store on load, and
rebuildable from the store's vectors alone (DESIGN.md §5).

Every file written gets an ``IndexFile`` row (its kind, factory, count, id digest, file digest and size).
Subclasses say what the store holds (``store_ids``, ``_stamp_problems``) and how to rebuild from it.
"""

from __future__ import annotations

import fcntl
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session
from tqdm.auto import tqdm

from indexer.device import Device
from indexer.vector_store import DEFAULT_FACTORY, VectorStore, sha256_file
from indexer.vectors import from_bytes, ids_digest
from schema import Database, IndexFile

log = logging.getLogger(__name__)


READ_CHUNK = 20_000  # rows per fetch when vectors are read back from the store


def read_vectors(session: Session, stmt: Select[Any], dim: int, *, total: int, desc: str,
                 progress: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids [N], vectors [N, dim]) from a ``select(id, vector bytes)``, in chunks, with a progress bar for
    long reads (over 50,000 rows unless ``progress`` says)."""
    show = progress if progress is not None else total > 50_000
    id_parts, vec_parts = [], []
    with tqdm(total=total, desc=desc, unit="vec", disable=not show, leave=False) as bar:
        for part in session.execute(stmt.execution_options(yield_per=READ_CHUNK)).partitions():
            id_parts.append(np.fromiter((r[0] for r in part), dtype=np.int64, count=len(part)))
            vec_parts.append(from_bytes([r[1] for r in part], dim))
            bar.update(len(part))
    if not id_parts:
        return np.empty(0, dtype=np.int64), np.empty((0, dim), dtype=np.float32)
    return np.concatenate(id_parts), np.concatenate(vec_parts)


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_ino}-{st.st_mtime_ns}"


class StaleIndexError(RuntimeError):
    """The FAISS file does not hold what the store says it should."""


@dataclass(frozen=True)
class IndexCheck:
    path: Path
    n_store: int  # vectors the store says the file should hold
    n_file: int | None  # vectors in the file (None when it could not be read)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class StampedIndex(ABC):
    """One FAISS file of a space, bound to a database, a folder and a device."""

    rebuild_command = "unibind index rebuild"

    def __init__(self, db: Database, space_id: int, dim: int, folder: Path, device: Device, kind: str, path: Path) -> None:
        self.db = db
        self.space_id = space_id
        self.dim = dim
        self.folder = folder
        self.device = device
        self.kind = kind
        self.path = path
        self._held = False  # this object holds the lock (a writer's load() needs no second one)

    @contextmanager
    def lock(self, mode: int = fcntl.LOCK_EX) -> Iterator[None]:
        """An exclusive lock for read-modify-write of the file (one writer at a time, from the file write to
        the commit of its record); ``LOCK_SH`` for a reader that must not see a file before its record."""
        if self._held:
            yield
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f"{self.path.name}.lock", "a") as f:
            fcntl.flock(f, mode)
            self._held = True
            try:
                yield
            finally:
                self._held = False
                fcntl.flock(f, fcntl.LOCK_UN)

    # -- what the store says (subclasses) ------------------------------------------------------------
    @abstractmethod
    def store_ids(self, session: Session) -> np.ndarray:
        """The ids the file should hold."""

    @abstractmethod
    def _stamp_problems(self, session: Session, rec: IndexFile | None) -> list[str]:
        """How the record disagrees with the store (counts, corpora)."""

    @abstractmethod
    def build_from_store(self, factory: str | None = None, *, progress: bool | None = None) -> VectorStore:
        """A new index from the stored vectors (no encoding)."""

    def _corpus_ids(self, session: Session) -> list[int]:
        return []

    def record(self, session: Session) -> IndexFile | None:
        stmt = (
            select(IndexFile)
            .where(IndexFile.space_id == self.space_id, IndexFile.kind == self.kind)
            .order_by(IndexFile.id.desc())
            .limit(1)
        )
        return session.scalars(stmt).first()

    def factory(self, session: Session) -> str:
        rec = self.record(session)
        return rec.factory if rec is not None else DEFAULT_FACTORY

    def _problems(self, session: Session, rec: IndexFile | None) -> list[str]:
        problems = self._stamp_problems(session, rec)
        if rec is not None:
            if not self.path.is_file():
                problems.append(f"index file {self.path} is missing")
            elif self.path.stat().st_size != rec.file_size:
                problems.append(f"index file {self.path} has {self.path.stat().st_size} bytes, the record says {rec.file_size}")
            elif rec.file_stamp is not None and _stamp(self.path) != rec.file_stamp:
                problems.append(f"index file {self.path} was replaced after its record was written")
        return problems

    # -- load, check ---------------------------------------------------------------------------------
    def _stale(self, detail: str) -> StaleIndexError:
        return StaleIndexError(f"{self.path}: {detail} — run `{self.rebuild_command}`")

    def load(self) -> VectorStore:
        """The file after checking it against its record and the store (StaleIndexError when they disagree);
        an empty index when nothing has been recorded and the store holds nothing."""
        with self.lock(fcntl.LOCK_SH):  # a writer's new file and its record appear together
            with self.db.session() as session:
                rec = self.record(session)
                problems = self._problems(session, rec)
            if problems:
                raise self._stale("; ".join(problems))
            if rec is None:
                return VectorStore.create(self.dim, self.device, DEFAULT_FACTORY)
            try:
                store = VectorStore.load(self.path, self.device, rec.factory)
            except ValueError as e:
                raise self._stale(f"the file cannot be read ({str(e).split(': ', 1)[-1]})") from e
        if store.ntotal != rec.n_vectors or store.dim != self.dim or ids_digest(store.ids()) != rec.ids_sha256:
            raise self._stale(f"holds {store.ntotal} vectors of dim {store.dim}, not the {rec.n_vectors} of dim "
                              f"{self.dim} with the ids its record names")
        return store

    def verify(self) -> IndexCheck:
        """The full check: stamp, file digest, and the exact id set against the store."""
        with self.db.session() as session:
            rec = self.record(session)
            problems = self._problems(session, rec)
            ids = self.store_ids(session)
        n_file = None
        if rec is not None and self.path.is_file():
            if sha256_file(self.path) != rec.file_sha256:
                problems.append("file digest differs from the one recorded when it was written")
            try:
                store = VectorStore.load(self.path, self.device, rec.factory)
                n_file = store.ntotal
                file_ids = store.ids()
                if ids_digest(file_ids) != ids_digest(ids):
                    missing, extra = np.setdiff1d(ids, file_ids).size, np.setdiff1d(file_ids, ids).size
                    problems.append(f"ids differ from the store: {missing} missing, {extra} not in the store")
            except ValueError as e:
                problems.append(str(e))
        return IndexCheck(path=self.path, n_store=int(ids.size), n_file=n_file, problems=problems)

    # -- write ---------------------------------------------------------------------------------------
    def save(self, session: Session, store: VectorStore, corpus_ids: list[int] | None = None) -> IndexFile:
        """Write ``store`` atomically and add its record to ``session`` (committed by the caller)."""
        digest, size = store.save(self.path)
        rec = IndexFile(
            space_id=self.space_id,
            kind=self.kind,
            path=str(self.path),
            factory=store.factory,
            n_vectors=store.ntotal,
            ids_sha256=ids_digest(store.ids()),
            file_sha256=digest,
            file_size=size,
            corpus_ids=sorted(corpus_ids if corpus_ids is not None else self._corpus_ids(session)),
            file_stamp=_stamp(self.path),
        )
        session.add(rec)
        return rec

    def rebuild(self, factory: str | None = None, *, progress: bool | None = None) -> IndexFile:
        """Rebuild the file from the store's vectors alone and record it."""
        with self.lock():
            store = self.build_from_store(factory, progress=progress)
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
