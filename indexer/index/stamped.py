"""An index that is derived state: recorded in the store, checked against it on load, rebuildable from the
store's vectors alone, and never changed once written. Its versions live in a place (``places``): FAISS files
in the data folder (the default) or Milvus collections (``--vectors``); the protocol is the same on both.

How a write goes (every writer: ingest, delete, gallery add/remove, re-projection, rebuild):

1. take the index's exclusive file lock (one writer per index on this host) and note the current record;
2. compute the new index in memory;
3. in one transaction whose first statement bumps the catalog version (which serialises publishers across
   processes and hosts): change the rows, write the index as a *new* version (a new file name: temp file,
   fsync, rename, fsync the folder; or a new collection, uploaded and flushed), check the current record is still
   the one noted (else another host published meanwhile: Busy), replace the record by one naming the new version;
4. after the commit, still under the lock, remove every version of this index that no record names.

A reader loads the version its record names. A failed or killed write leaves the old record naming the old
version, which keeps serving; the new one, named by nothing, goes at the next write.
"""

from __future__ import annotations

import fcntl
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Select, delete, select
from sqlalchemy.orm import Session
from tqdm.auto import tqdm

from unibind.indexer.index.data_home import DataHome
from unibind.indexer.index.places import MILVUS_PREFIX, FilePlace, IndexName, IndexPlace, SearchIndex, place_for
from unibind.indexer.runtime.device import Device
from unibind.indexer.index.vector_store import VectorStore
from unibind.indexer.runtime.vectors import from_bytes, ids_digest
from unibind.schema import Database, IndexFile
from unibind.schema.errors import Busy, Conflict
from unibind.schema.store_state import bump_version, lock_catalog

log = logging.getLogger(__name__)


READ_CHUNK = 20_000  # rows per fetch when vectors are read back from the store
IN_CHUNK = 10_000  # keys per IN (...) when rows are read by key
_NO_BASE = object()


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


def columns_by_id(session: Session, key: Any, columns: dict[str, Any], ids: np.ndarray,
                  fill: dict[str, Any] | None = None) -> dict[str, list[Any]]:
    """``{name: [value of column for each of ids]}``, read in chunks of IN_CHUNK keys; a NULL becomes
    ``fill[name]``. Every id must exist."""
    found: dict[int, tuple[Any, ...]] = {}
    for s in range(0, ids.size, IN_CHUNK):
        chunk = [int(i) for i in ids[s : s + IN_CHUNK]]
        found.update((row[0], tuple(row[1:])) for row in session.execute(select(key, *columns.values()).where(key.in_(chunk))))
    if len(found) != len(set(ids.tolist())):
        raise Conflict(f"{len(set(ids.tolist())) - len(found)} rows of the index are not in the store")
    fill = fill or {}
    return {name: [found[int(i)][j] if found[int(i)][j] is not None else fill.get(name) for i in ids]
            for j, name in enumerate(columns)}


class StaleIndexError(Conflict):
    """The index does not hold what the store says it should; the message names the command that repairs it."""


@dataclass(frozen=True)
class IndexCheck:
    path: Path | None  # the file the record names (None: no record, or a Milvus collection)
    n_store: int  # vectors the store says the index should hold
    n_file: int | None  # vectors in the index (None when it could not be read)
    problems: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)  # versions of this index no record names (removed by the next write)
    location: str = ""  # where the recorded version is, for people: a file path, or a Milvus collection

    @property
    def ok(self) -> bool:
        return not self.problems


class StampedIndex(ABC):
    """One index of a space, bound to a database, a data folder (its locks, and its files on the FAISS place), the
    place its versions live (``db.vectors``) and a device."""

    rebuild_command = "unibind index rebuild"
    # scalar fields each row carries where the place keeps them (Milvus): filters on them run in the vector store
    field_types: dict[str, str] = {}

    def __init__(self, db: Database, space_id: int, dim: int, data: DataHome, device: Device, kind: str, stem: str) -> None:
        self.db = db
        self.space_id = space_id
        self.dim = dim
        self.data = data
        self.folder = data.index_dir
        self.device = device
        self.kind = kind
        self.stem = stem  # file names: <stem>.<unique>.faiss (no stem has a dot: modality names cannot)
        self.index_name = IndexName(stem, f"s{space_id}_{kind.replace(':', '')}")
        self.place: IndexPlace = place_for(data, db.vectors, self.field_types)
        self._held = False  # this object holds the exclusive lock (a writer's load() needs no second one)
        self._base: object = _NO_BASE  # the record id current when the exclusive lock was taken

    # -- locking -------------------------------------------------------------------------------------
    @contextmanager
    def lock(self, mode: int = fcntl.LOCK_EX) -> Iterator[None]:
        """Exclusive: one writer of this index at a time on this host, from reading the current index to the
        commit of the new record; on leaving, files no record names are removed. Shared (``LOCK_SH``): a reader
        that loads the file its record names while no writer can remove it."""
        if self._held:
            yield
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f"{self.stem}.lock", "a") as f:
            fcntl.flock(f, mode)
            exclusive = mode == fcntl.LOCK_EX
            try:
                if exclusive:
                    self._held = True
                    with self.db.session() as session:
                        rec = self.record(session)
                        self._base = rec.id if rec is not None else None
                yield
            finally:
                if exclusive:
                    self._held, self._base = False, _NO_BASE
                    try:
                        self.collect_garbage()
                    except Exception as e:  # noqa: BLE001 - leftovers go at the next write
                        log.warning("could not remove unused files of %s: %s", self.stem, e)
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

    def fields_of(self, session: Session, ids: np.ndarray) -> dict[str, np.ndarray]:
        """The ``field_types`` columns of rows ``ids`` (in that order), read from the store (the session sees the
        rows the publishing transaction is adding)."""
        return {}

    def records(self, session: Session) -> list[IndexFile]:
        """This index's records, newest (the one that serves) first: on Milvus also the one it replaced."""
        stmt = (select(IndexFile).where(IndexFile.space_id == self.space_id, IndexFile.kind == self.kind)
                .order_by(IndexFile.id.desc()))
        return list(session.scalars(stmt))

    def record(self, session: Session) -> IndexFile | None:
        stmt = (
            select(IndexFile)
            .where(IndexFile.space_id == self.space_id, IndexFile.kind == self.kind)
            .order_by(IndexFile.id.desc())
            .limit(1)
        )
        return session.scalars(stmt).first()

    def factory(self, session: Session) -> str:
        """The index type of the current version, or this place's default (also after a switch of place)."""
        return self.place.check_factory(None, self.record(session))

    @property
    def path(self) -> Path | None:
        """The file the current record names (None before the first write, or when it names a Milvus collection)."""
        with self.db.session() as session:
            rec = self.record(session)
            return self.data.resolve(rec.path) if rec is not None and not rec.path.startswith(MILVUS_PREFIX) else None

    def _where(self, rec: IndexFile | None) -> str:
        return self.place.describe(rec) if rec is None or self.place.owns(rec.path) else rec.path

    @property
    def location(self) -> str:
        """Where the current version is, for people: a file path or a Milvus collection."""
        with self.db.session() as session:
            return self._where(self.record(session))

    def _problems(self, session: Session, rec: IndexFile | None) -> list[str]:
        problems = self._stamp_problems(session, rec)
        if rec is not None:
            if not self.place.owns(rec.path):
                problems.append(self._problems_of_place(rec))
            else:
                problems.extend(self.place.problems(rec, self.dim))
        return problems

    def check_place(self) -> None:
        """A writer's first check: the index is recorded in this command's place (StaleIndexError naming the
        setting and the move otherwise), so nothing is encoded for a write that would be refused."""
        with self.db.session() as session:
            rec = self.record(session)
        if rec is not None and not self.place.owns(rec.path):
            raise self._stale(self._problems_of_place(rec))

    def _problems_of_place(self, rec: IndexFile) -> str:
        other = "a Milvus collection" if rec.path.startswith(MILVUS_PREFIX) else "a FAISS file"
        return (f"it was written to {other} ({rec.path}) and this command uses {self.place.label}: give the "
                f"--vectors setting it was written with, or move it here with `{self.rebuild_command}`")

    def new_store(self, factory: str | None, ids: np.ndarray, vectors: np.ndarray) -> VectorStore:
        """A writer's in-memory index of ``ids`` / ``vectors`` for a version of type ``factory`` (the current type
        when None): the FAISS index itself, or the exact copy uploaded to a Milvus collection of that type."""
        with self.db.session() as session:
            factory = self.place.check_factory(factory, self.record(session))
        store = VectorStore.from_vectors(self.dim, self.device, self.place.memory_factory(factory), ids, vectors)
        store.factory = factory
        return store

    # -- load, check ---------------------------------------------------------------------------------
    def _stale(self, detail: str) -> StaleIndexError:
        return StaleIndexError(f"the {self.kind_name} index: {detail} — run `{self.rebuild_command}`")

    @property
    def kind_name(self) -> str:
        return self.kind

    def load(self) -> SearchIndex:
        """The recorded version after checking it against its record and the store (StaleIndexError when they
        disagree); an empty index when nothing has been recorded and the store holds nothing. A FAISS file is read
        whole and its ids checked; a Milvus collection is checked by its count (``verify`` reads its keys)."""
        with self.lock(fcntl.LOCK_SH):  # no writer removes the recorded version while it is read
            with self.db.session() as session:
                rec = self.record(session)
                problems = self._problems(session, rec)
            if problems:
                raise self._stale("; ".join(problems))
            if rec is None:
                return self.new_store(None, np.empty(0, np.int64), np.empty((0, self.dim), np.float32))
            try:
                store = self.place.open(rec, self.dim, self.device)
            except ValueError as e:  # Conflict included
                raise self._stale(f"the index cannot be read ({str(e).split(': ', 1)[-1]})") from e
        if isinstance(store, VectorStore) and (store.ntotal != rec.n_vectors or store.dim != self.dim
                                               or ids_digest(store.ids()) != rec.ids_sha256):
            raise self._stale(f"the file holds {store.ntotal} vectors of dim {store.dim}, not the {rec.n_vectors} of "
                              f"dim {self.dim} with the ids its record names")
        return store

    def verify(self) -> IndexCheck:
        """The full check: size or count, the digest of the file (of the collection's vectors), and the exact id
        set against the store."""
        with self.lock(fcntl.LOCK_SH):
            with self.db.session() as session:
                rec = self.record(session)
                problems = self._problems(session, rec)
                ids = self.store_ids(session)
                records = self.records(session)
            n_file = None
            if rec is not None and self.place.owns(rec.path):
                file_ids, more = self.place.contents(rec, self.dim, self.device)
                problems.extend(more)
                if file_ids is not None:
                    n_file = int(file_ids.size)
                    if ids_digest(file_ids) != ids_digest(ids):
                        missing, extra = np.setdiff1d(ids, file_ids).size, np.setdiff1d(file_ids, ids).size
                        problems.append(f"ids differ from the store: {missing} missing, {extra} not in the store")
            orphans = self.place.unnamed(self.index_name, records)
            path = self.data.resolve(rec.path) if rec is not None and not rec.path.startswith(MILVUS_PREFIX) else None
        return IndexCheck(path=path, n_store=int(ids.size), n_file=n_file, problems=problems, orphans=orphans,
                          location=self._where(rec))

    # -- write ---------------------------------------------------------------------------------------
    def save(self, session: Session, store: VectorStore, corpus_ids: list[int] | None = None) -> IndexFile:
        """Write ``store`` as a new version and make the session's transaction replace the record by one naming it.

        Call under ``lock()``, in a transaction that began with ``bump_version`` (the publish it belongs to).
        Busy when another host published a newer record since the lock was taken."""
        if not self._held:
            raise RuntimeError(f"{self.stem}: save() needs the exclusive lock")
        current = self.record(session)
        if self._base is not _NO_BASE and (current.id if current is not None else None) != self._base:
            raise Busy(f"the {self.kind_name} index was changed by another process while this write was prepared; "
                       "run the command again")
        factory = self.place.check_factory(store.factory, None)
        ids = store.ids()
        columns = self.fields_of(session, ids) if self.place.keeps_fields else None
        written = self.place.write(self.index_name, store, factory, ids, columns)  # durable before a record names it
        stale = delete(IndexFile).where(IndexFile.space_id == self.space_id, IndexFile.kind == self.kind)
        if current is not None and self.place.keeps_previous:
            stale = stale.where(IndexFile.id != current.id)  # the replaced version stays named, for replicas
        session.execute(stale)
        rec = IndexFile(
            space_id=self.space_id,
            kind=self.kind,
            path=written.path,
            factory=factory,
            n_vectors=store.ntotal,
            ids_sha256=ids_digest(ids),
            file_sha256=written.sha256,
            file_size=written.size,
            corpus_ids=sorted(corpus_ids if corpus_ids is not None else self._corpus_ids(session)),
        )
        session.add(rec)
        return rec

    def rebuild(self, factory: str | None = None, *, progress: bool | None = None) -> IndexFile:
        """Rebuild the file from the store's vectors alone and record it."""
        with self.db.session() as session:
            self.place.check_factory(factory, self.record(session))  # a bad --factory before any work
        with self.lock():
            store = self.build_from_store(factory, progress=progress)
            with self.db.transaction() as session:
                bump_version(session)
                rec = self.save(session, store)
        log.info("rebuilt %s: %d vectors, type %s", rec.path, rec.n_vectors, rec.factory)
        return rec

    def current_or_rebuilt(self) -> VectorStore:
        """A writer's copy of the current index: the checked FAISS file, or (when missing or stale, or when the
        versions live in Milvus, which keeps no copy here) one built from the stored vectors; call under lock().

        An index recorded in the other place (FAISS files vs Milvus) is refused, not moved: a writer run without
        the ``--vectors`` setting it was written with would otherwise leave every reader of that place behind.
        ``index rebuild`` / ``gallery rebuild`` move it. A place out of reach (Unavailable) fails the write."""
        self.check_place()
        if not isinstance(self.place, FilePlace):
            return self.build_from_store()  # Milvus keeps no copy here: the stored vectors are the copy
        try:
            store = self.load()
        except (FileNotFoundError, StaleIndexError) as e:
            log.warning("%s; rebuilding it from the stored vectors", e)
            return self.build_from_store()
        assert isinstance(store, VectorStore)
        return store

    # -- unused versions -----------------------------------------------------------------------------
    def collect_garbage(self) -> list[str]:
        """Remove the versions of this index that the committed record does not name; call under ``lock()``.

        The catalog lock is held meanwhile: a writer holds it from writing its new version to its commit, so a
        version whose record is about to commit (on another host sharing the data folder or the Milvus) is never
        taken. Nothing to remove (the common case) takes no lock."""
        places = [self.place] if isinstance(self.place, FilePlace) else [self.place, FilePlace(self.data)]
        with self.db.session() as session:
            records = self.records(session)
            if not any(place.unnamed(self.index_name, records) for place in places):
                return []
        gone: list[str] = []
        with self.db.transaction() as session:
            lock_catalog(session)
            records = self.records(session)
            for place in places:  # on Milvus, also the files an index left when it moved there
                names = place.unnamed(self.index_name, records)
                place.remove(names)
                if names:
                    place.sync()
                gone += names
        if gone:
            log.info("removed %d unused versions of %s", len(gone), self.stem)
        return gone
