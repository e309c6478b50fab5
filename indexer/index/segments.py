"""Indexes made of immutable segments: derived state, recorded in the store, checked against it, rebuildable from
the store's vectors alone, and never changed once written.

An index (a space's descriptions, a modality's gallery) is the set of its live ``Segment`` records. How a write goes
(an ingest, a gallery add):

1. **register** a segment (state ``building``, this process as its owner, a payload path no one has used) in a
   short transaction of its own;
2. **write** the payload holding only the write's new rows (a FAISS file: temp file, fsync, rename, fsync of the
   folder; or a Milvus collection, uploaded and flushed), outside any lock, a heartbeat keeping the lease;
3. **publish**: in the caller's transaction, whose first statement bumps the catalog version to v, the record turns
   ``live`` at ``created_version = v``. That transaction writes only small records, so the catalog lock is held for
   milliseconds whatever the index's size. A new segment joins whatever is current: two writers of different rows
   never conflict.

Removals write no payload: a segment that holds exactly what goes is dropped (``dropped_version = v``), otherwise
the segment that holds a removed row gets a tombstone. A segment holds whole write groups (``group_ids``: the
corpora of a description index, the batches of a gallery), so the segment that holds a row is known exactly. Compaction (``unibind.indexer.index.compaction``) merges
segments and folds tombstones in, as a publish of its own. A reader at version v searches the segments with
``created_version <= v < dropped_version`` less their tombstones of version <= v (``fanout.SegmentSet``); the
vacuum (``unibind.indexer.store.vacuum``) removes dropped segments once no reader can search them, and payloads
that no record names (what killed writes left).
"""

from __future__ import annotations

import fcntl
import logging
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Select, insert, select, update
from sqlalchemy.orm import Session
from tqdm.auto import tqdm

from unibind.indexer.index.data_home import DataHome
from unibind.indexer.index.fanout import Part, SegmentSet
from unibind.indexer.index.places import MILVUS_PREFIX, FilePlace, IndexName, IndexPlace, place_for
from unibind.indexer.index.readers import ReaderLeaseHolder, VersionGone
from unibind.indexer.index.vector_store import VectorStore
from unibind.indexer.runtime.device import Device
from unibind.indexer.runtime.vectors import from_bytes, ids_digest
from unibind.indexer.runtime.lease import Heartbeat, current_owner
from unibind.schema import Database, Segment, SegmentState, Tombstone
from unibind.schema.errors import Busy, Conflict
from unibind.schema.store_state import bump_version, catalog_state, catalog_version, lock_catalog
from unibind.schema.versions import segment_visible

log = logging.getLogger(__name__)

READ_CHUNK = 20_000  # rows per fetch when vectors are read back from the store
IN_CHUNK = 10_000  # keys per IN (...) when rows are read by key
TOMBSTONE_CHUNK = 5_000  # tombstones per INSERT
LOAD_ATTEMPTS = 5  # reads of the current version when the vacuum keeps passing the one just read


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


class LostSegment(Conflict):
    """A writer's segment was removed by another process that took the writer for dead."""


@dataclass(frozen=True)
class IndexCheck:
    path: Path | None  # the folder of its files (None: no segment, or Milvus collections)
    n_store: int  # vectors the store says the index should hold
    n_file: int | None  # live vectors in the index (None when a segment could not be read)
    problems: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)  # payloads no record names (removed by the next write)
    location: str = ""  # where the segments are, for people: a folder, or Milvus collections
    segments: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Built:
    """A segment registered and written, waiting for its publish: its record id and what the record will say."""

    segment_id: int
    path: str
    ids: np.ndarray  # sorted
    sha256: str
    size: int


# Payloads are immutable, so one loaded copy serves every reader of this process (a service's successive
# snapshots share all but the new segments). Entries go when no reader holds them any more.
_LOADED: weakref.WeakValueDictionary[tuple[str, str, str], Any] = weakref.WeakValueDictionary()  # see _cache_key
_LOADED_LOCK = threading.Lock()


class SegmentedIndex(ABC):
    """One index of a space, bound to a database, a data folder (its locks and files), the place its payloads live
    (``db.vectors``) and a device."""

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

    # -- what the store says (subclasses) ------------------------------------------------------------
    @abstractmethod
    def store_ids(self, session: Session, version: int | None = None) -> np.ndarray:
        """The ids of the rows a reader at ``version`` (None: now) sees: what the index must hold."""

    @abstractmethod
    def store_count(self, session: Session, version: int | None = None) -> int:
        """How many rows a reader at ``version`` sees (cheaper than ``store_ids``)."""

    @abstractmethod
    def rows(self, version: int | None = None) -> Select[Any]:
        """``select(id, vector)`` of the rows a reader at ``version`` (None: now) sees, by id."""

    @abstractmethod
    def deleted_since(self, session: Session, version: int, ids: np.ndarray) -> np.ndarray:
        """Those of ``ids`` whose rows were removed after catalog version ``version``."""

    def _store_problems(self, session: Session, segments: list[Segment], version: int) -> list[str]:
        """How the live segments disagree with the store beyond their counts (subclasses add theirs)."""
        return []

    def fields_of(self, session: Session, ids: np.ndarray) -> dict[str, np.ndarray]:
        """The ``field_types`` columns of rows ``ids`` (in that order), read from the store."""
        return {}

    @property
    def kind_name(self) -> str:
        return self.kind

    # -- records -------------------------------------------------------------------------------------
    def segments(self, session: Session, version: int | None = None) -> list[Segment]:
        """The segments a reader at ``version`` (None: now) searches, oldest first."""
        stmt = (select(Segment).where(Segment.space_id == self.space_id, Segment.kind == self.kind,
                                      segment_visible(version)).order_by(Segment.id))
        return list(session.scalars(stmt))

    def tombstones(self, session: Session, segments: Sequence[Segment], version: int | None = None
                   ) -> dict[int, np.ndarray]:
        """{segment id: sorted ids its readers at ``version`` (None: now) leave out}."""
        ids = [s.id for s in segments]
        out: dict[int, list[int]] = {i: [] for i in ids}
        if not ids:
            return {}
        stmt = select(Tombstone.segment_id, Tombstone.row_id).where(Tombstone.segment_id.in_(ids))
        if version is not None:
            stmt = stmt.where(Tombstone.version <= version)
        for sid, rid in session.execute(stmt):
            out[sid].append(rid)
        return {sid: np.unique(np.asarray(rows, dtype=np.int64)) for sid, rows in out.items()}

    def configured_factory(self, session: Session) -> str | None:
        """The type the index was configured with in this place (its newest live segment's), or None."""
        live = [s for s in self.segments(session) if self.place.owns(s.path)]
        return live[-1].factory if live else None

    def factory(self, session: Session) -> str:
        """The index type of the current segments, or this place's default (also after a switch of place)."""
        return self.place.check_factory(None, self.configured_factory(session))

    def _built_as(self, seg: Segment) -> str:
        return self.place.segment_factory(seg.factory, self.dim, int(seg.n_vectors))

    def files(self) -> list[Path]:
        """The files of the live segments (oldest first; none when they live in Milvus)."""
        with self.db.session() as session:
            return [self.data.resolve(s.path) for s in self.segments(session) if not s.path.startswith(MILVUS_PREFIX)]

    @property
    def location(self) -> str:
        """Where the segments are, for people: the folder of the files, or the Milvus they are in."""
        if isinstance(self.place, FilePlace):
            return str(self.folder)
        return self.place.label

    # -- locking -------------------------------------------------------------------------------------
    @contextmanager
    def lock(self, mode: int = fcntl.LOCK_SH, *, blocking: bool = True, name: str = "lock") -> Iterator[bool]:
        """Shared: a reader opening payloads, which no sweep on this host removes meanwhile. Exclusive: a removal of
        payloads (a sweep takes it non-blocking: it yields False, and leaves the payloads for another time, when
        readers hold it). ``name``: another lock file of the index (``compact.lock``: one compactor per host)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f"{self.stem}.{name}", "a") as f:
            try:
                fcntl.flock(f, mode | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # -- the place -----------------------------------------------------------------------------------
    def check_place(self) -> None:
        """A writer's first check: the index lives in this command's place (StaleIndexError naming the setting and
        the move otherwise), so nothing is encoded for a write that would be refused."""
        with self.db.session() as session:
            other = [s for s in self.segments(session) if not self.place.owns(s.path)]
        if other:
            raise self._stale(self._problems_of_place(other[0]))

    def _problems_of_place(self, rec: Segment) -> str:
        other = "a Milvus collection" if rec.path.startswith(MILVUS_PREFIX) else "a FAISS file"
        return (f"it was written to {other} ({rec.path}) and this command uses {self.place.label}: give the "
                f"--vectors setting it was written with, or move it here with `{self.rebuild_command}`")

    def _stale(self, detail: str) -> StaleIndexError:
        return StaleIndexError(f"the {self.kind_name} index: {detail} — run `{self.rebuild_command}`")

    # -- writing a segment -----------------------------------------------------------------------------
    def build(self, ids: np.ndarray, vectors: np.ndarray, *, groups: Sequence[int], factory: str | None = None,
              fresh: bool = False) -> Built:
        """Register a segment and write its payload holding ``vectors`` under ``ids``, the rows of the write groups
        ``groups`` (whole); nothing is visible until ``publish``. ``factory``: the index type (None: the current
        one); ``fresh``: a rebuild (a Milvus index starts a new collection). On failure nothing of it remains."""
        ids = np.asarray(ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        ids, vectors = ids[order], np.ascontiguousarray(np.asarray(vectors, dtype=np.float32)[order])
        with self.db.session() as session:
            live = [s.path for s in self.segments(session) if self.place.owns(s.path)]
            factory = self.place.check_factory(factory, self.configured_factory(session))
        path = self.place.new_path(self.index_name, factory, live, fresh)
        with self.db.transaction() as session:  # the record first: a payload no record names is debris
            shared = self.place.shared_by(path)
            if shared is not None and any(p.startswith(shared) for p in live):
                # joining a container other segments use (a Milvus collection): under the catalog lock, which the
                # vacuum takes to forget records, one of them must still name it, or a sweep may be dropping it
                lock_catalog(session)
                if not session.scalar(select(Segment.id).where(Segment.path.startswith(shared, autoescape=True))
                                      .limit(1)):
                    path = self.place.new_path(self.index_name, factory, [], True)
            seg = Segment(space_id=self.space_id, kind=self.kind, state=SegmentState.BUILDING, path=path,
                          factory=factory, group_ids=sorted(set(groups)), owner=current_owner(),
                          heartbeat_at=datetime.now(timezone.utc))
            session.add(seg)
            session.flush()
            segment_id = seg.id
        try:
            with Heartbeat(lambda: self._beat(segment_id), name="unibind-segment") as heartbeat:
                built_as = self.place.segment_factory(factory, self.dim, int(ids.size))
                store = VectorStore.from_vectors(self.dim, self.device, self.place.memory_factory(built_as), ids, vectors)
                columns = None
                if self.place.keeps_fields:
                    with self.db.session() as session:
                        columns = self.fields_of(session, ids)
                written = self.place.write(path, store, built_as, ids, columns)
                if heartbeat.lost.is_set():
                    raise self._lost()
        except BaseException:
            self.discard(segment_id, path)
            raise
        log.debug("wrote segment %d of %s: %d vectors (%s)", segment_id, self.stem, ids.size, built_as)
        return Built(segment_id, path, ids, written.sha256, written.size)

    def _beat(self, segment_id: int) -> bool:
        with self.db.transaction() as session:
            result = session.execute(update(Segment).where(Segment.id == segment_id, Segment.owner == current_owner(),
                                                           Segment.state == SegmentState.BUILDING)
                                     .values(heartbeat_at=datetime.now(timezone.utc)))
            return bool(result.rowcount)

    def _lost(self) -> LostSegment:
        return LostSegment(f"the {self.kind_name} index: this write's segment was removed by another process that "
                           "took this one for dead (no heartbeat for longer than the lease: a suspended machine, or "
                           "clocks out of step); run it again")

    @contextmanager
    def discarding(self, built: Built) -> Iterator[None]:
        """Around a publish of ``built``: on any failure (the transaction rolled back first when it is entered after
        this) its segment is discarded, and the error goes on."""
        try:
            yield
        except BaseException:
            self.discard(built.segment_id, built.path)
            raise

    def discard(self, segment_id: int, path: str | None = None) -> None:
        """Best effort, after a failure: remove an unpublished segment's record and payload (the next write removes
        whatever this leaves). ``path``: the payload's, when the caller knows it.

        Where a payload is removed before its record (Milvus rows), this writer deletes its rows even when another
        process took it for dead and already forgot the record: the token is its own, and rows it inserted after
        that process deleted the token's rows would otherwise stay. A published segment is never touched."""
        try:
            with self.db.session() as session:
                seg = session.get(Segment, segment_id)
                if seg is not None and seg.state is not SegmentState.BUILDING:
                    return  # published (the failure came after its commit)
                mine = seg is not None and seg.owner == current_owner()
                path = seg.path if seg is not None else path
            if path is None:
                return
            first = self.place.owns(path) and self.place.removes_first  # its rows go before the record naming them
            if first:
                self.remove_payloads([path])
            if not mine:
                return
            with self.db.transaction() as session:
                seg = session.get(Segment, segment_id)
                if seg is None or seg.state is not SegmentState.BUILDING or seg.owner != current_owner():
                    return
                session.delete(seg)
            if not first:
                self.remove_payloads([path])
        except Exception as e:  # noqa: BLE001 - the original error matters more
            log.warning("could not remove the unpublished segment %d: %s", segment_id, e)

    # -- in the publishing transaction ---------------------------------------------------------------------
    def publish(self, session: Session, built: Built, version: int) -> Segment:
        """Make a written segment live at ``version``; call in the transaction that bumped the version to it."""
        seg = session.get(Segment, built.segment_id)
        if seg is None or seg.state is not SegmentState.BUILDING or seg.owner != current_owner():
            raise self._lost()  # another process took this writer for dead (and may be removing its payload)
        seg.state = SegmentState.LIVE
        seg.created_version = version
        seg.n_vectors = int(built.ids.size)
        seg.ids_sha256 = ids_digest(built.ids)
        seg.file_sha256, seg.file_size = built.sha256, built.size
        seg.owner = seg.heartbeat_at = None
        return seg

    def drop(self, session: Session, segments: Sequence[Segment], version: int, replaced_by: int | None = None) -> None:
        """End ``segments`` at ``version`` (readers at earlier versions still search them until the vacuum)."""
        ids = [s.id for s in segments if s.dropped_version is None]
        if ids:
            session.execute(update(Segment).where(Segment.id.in_(ids), Segment.dropped_version.is_(None))
                            .values(dropped_version=version, replaced_by=replaced_by))

    def holders(self, session: Session, group: int) -> list[Segment]:
        """The live segments that hold the write group ``group`` (one, unless the index is stale)."""
        return [s for s in self.segments(session) if group in (s.group_ids or [])]

    def tombstone(self, session: Session, ids: np.ndarray, version: int, segments: Sequence[Segment]) -> int:
        """Tombstone the removed rows ``ids`` at ``version`` in ``segments`` (those that hold them). Returns how many
        tombstones were written."""
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        rows = [{"segment_id": seg.id, "row_id": int(i), "version": version} for seg in segments for i in ids]
        for s in range(0, len(rows), TOMBSTONE_CHUNK):
            session.execute(insert(Tombstone), rows[s : s + TOMBSTONE_CHUNK])
        return len(rows)

    def replace_segments(self, session: Session, sources: Sequence[Segment], built: Built | None, read_at: int,
                         version: int) -> Segment | None:
        """The publish of a merge (compaction, rebuild): ``built`` holds the rows ``sources`` held at ``read_at``.
        What happened since is kept: rows removed after ``read_at`` are tombstoned in the new segment, segments added
        meanwhile stay. Busy when another merge took one of the sources meanwhile (its work would be duplicated)."""
        if catalog_state(session)[1] > read_at:  # its reader lease ran out: rows removed since may be gone
            raise Busy(f"the {self.kind_name} index: this merge read catalog version {read_at}, which the vacuum has "
                       "passed; run the command again")
        current = {s.id: s for s in session.scalars(select(Segment).where(Segment.id.in_([s.id for s in sources])))}
        taken = [s for s in sources if s.id not in current or current[s.id].replaced_by is not None]
        if taken:
            raise Busy(f"the {self.kind_name} index was compacted or rebuilt by another process meanwhile; "
                       "run the command again")
        new = self.publish(session, built, version) if built is not None else None
        if built is not None and built.ids.size:
            gone = self.deleted_since(session, read_at, built.ids)
            if gone.size:
                session.flush()
                self.tombstone(session, gone, version, [new])  # type: ignore[list-item]
        self.drop(session, list(current.values()), version, replaced_by=new.id if new is not None else None)
        return new

    # -- reading -----------------------------------------------------------------------------------------
    def load(self, version: int | None = None) -> SegmentSet:
        """The index as a reader at ``version`` (None: the current catalog version) searches it, after checks of its
        segments against the store (StaleIndexError when they disagree: a payload missing or of another size, live
        vectors other than the store's count). Payloads are shared with this process's other readers.

        The vacuum may remove what an older version saw while it is read (a reader without a lease): the horizon is
        checked after the reads, and the current version is read again (VersionGone for a pinned ``version``)."""
        for _ in range(LOAD_ATTEMPTS):
            stale: StaleIndexError | None = None
            if version is not None:
                at = version
            else:
                with self.db.session() as session:
                    at = catalog_version(session)
            try:
                view = self._load(at)
            except StaleIndexError as e:
                stale = e
            with self.db.session() as session:
                passed = catalog_state(session)[1] > at
            if not passed:
                if stale is not None:
                    raise stale
                return view
            if version is not None:
                raise VersionGone(f"catalog version {at} was vacuumed: read a newer one")
        raise Busy(f"the {self.kind_name} index kept changing while it was read; try again")

    def _load(self, version: int) -> SegmentSet:
        with self.lock(fcntl.LOCK_SH):  # no sweep on this host removes a payload while it is opened
            with self.db.session() as session:
                segs = self.segments(session, version)
                dead = self.tombstones(session, segs, version)
                n_store = self.store_count(session, version)
                problems = [self._problems_of_place(s) for s in segs if not self.place.owns(s.path)]
                if not problems:
                    problems = self._store_problems(session, segs, version)
            if not segs and n_store:
                problems.append(f"no index has been recorded for its {n_store} rows")
            for seg in segs:
                if not problems and not self._is_loaded(seg):
                    problems += self.place.problems(seg, self.dim)
            if problems:
                raise self._stale("; ".join(problems))
            parts = [self.open_segment(s, dead.get(s.id, np.empty(0, np.int64))) for s in segs]
        n_live = sum(p.n_live for p in parts)
        if n_live != n_store:
            raise self._stale(f"its segments hold {n_live} live vectors, the store has {n_store} rows")
        factory = self.place.check_factory(None, segs[-1].factory if segs else None)
        return SegmentSet(parts, self.dim, factory, version)

    def _is_loaded(self, seg: Segment) -> bool:
        with _LOADED_LOCK:
            return self._cache_key(seg) in _LOADED

    def _cache_key(self, seg: Segment) -> tuple[str, str, str]:
        """What names a loaded payload: its place and path, and for a file its size and time (a file changed on
        disk is read and checked again)."""
        stamp = ""
        if not seg.path.startswith(MILVUS_PREFIX):
            try:
                st = self.data.resolve(seg.path).stat()
                stamp = f"{st.st_size}:{st.st_mtime_ns}"
            except OSError:
                stamp = "missing"
        return (self.place.label, str(self.data.root), f"{seg.path}@{stamp}")

    def open_segment(self, seg: Segment, tombstones: np.ndarray) -> Part:
        """One segment, opened (or shared with this process's other readers), with the tombstoned ids it holds."""
        built_as = self._built_as(seg)
        key = self._cache_key(seg)
        with _LOADED_LOCK:
            store = _LOADED.get(key)
        if store is None:
            try:
                store = self.place.open(seg, self.dim, self.device, built_as)
            except FileNotFoundError as e:
                raise self._stale(f"index file {seg.path} is missing") from e
            except ValueError as e:  # Conflict included
                raise self._stale(f"a segment cannot be read ({str(e).split(': ', 1)[-1]})") from e
            if isinstance(store, VectorStore) and (store.ntotal != seg.n_vectors or store.dim != self.dim
                                                   or ids_digest(store.ids()) != seg.ids_sha256):
                raise self._stale(f"the file {seg.path} holds {store.ntotal} vectors of dim {store.dim}, not the "
                                  f"{seg.n_vectors} of dim {self.dim} with the ids its record names")
            with _LOADED_LOCK:
                store = _LOADED.setdefault(key, store)
        return Part(seg.id, store, tombstones, built_as)  # tombstones name rows the segment holds

    def verify(self) -> IndexCheck:
        """The full check: every segment's payload (size or count, its digest, its ids), and the live ids of all of
        them against the store's rows."""
        with self.lock(fcntl.LOCK_SH):
            with self.db.session() as session:
                version = catalog_version(session)
                segs = self.segments(session, version)
                dead = self.tombstones(session, segs, version)
                ids = self.store_ids(session, version)
                problems = [self._problems_of_place(s) for s in segs if not self.place.owns(s.path)]
                problems += self._store_problems(session, segs, version)
                if not segs and ids.size:
                    problems.append(f"no index has been recorded for the {ids.size} rows of the store")
            parts, n_file = [], 0
            for s in segs:
                if not self.place.owns(s.path):
                    n_file = None
                    continue
                more = self.place.problems(s, self.dim)
                if more:
                    problems += more
                    n_file = None
                    continue
                file_ids, more = self.place.contents(s, self.dim, self.device, self._built_as(s))
                problems += more
                if file_ids is None:
                    n_file = None
                    continue
                if ids_digest(file_ids) != s.ids_sha256:
                    problems.append(f"segment {s.id} ({s.path}) holds other ids than its record names")
                parts.append(np.setdiff1d(file_ids, dead.get(s.id, np.empty(0, np.int64))))
            if n_file is not None:
                held = np.concatenate(parts) if parts else np.empty(0, np.int64)
                n_file = int(held.size)
                if held.size != np.unique(held).size:
                    problems.append(f"{held.size - np.unique(held).size} rows are in more than one segment")
                if ids_digest(held) != ids_digest(ids):
                    missing, extra = np.setdiff1d(ids, held).size, np.setdiff1d(held, ids).size
                    problems.append(f"ids differ from the store: {missing} missing, {extra} not in the store")
            orphans = self.unnamed()
            problems += self.place.strays(self.index_name, self._record_paths)
        return IndexCheck(self.folder if isinstance(self.place, FilePlace) and segs else None, int(ids.size), n_file,
                          problems, orphans, self.location, len(segs))

    # -- payloads no record names ---------------------------------------------------------------------------
    def _places(self) -> list[IndexPlace]:
        """Where this index's payloads may be: its place, and FAISS files it left when it moved to Milvus."""
        return [self.place] if isinstance(self.place, FilePlace) else [self.place, FilePlace(self.data)]

    def _unnamed(self) -> list[tuple[IndexPlace, str]]:
        listing = [(place, payload, path) for place in self._places() for payload, path in place.listing(self.index_name)]
        if not listing:  # listed first, then the records read: a writer registers its record before it writes
            return []
        with self.db.session() as session:
            named = list(session.scalars(select(Segment.path).where(Segment.space_id == self.space_id,
                                                                    Segment.kind == self.kind)))
        kept = {place: {place.listing_key(p) for p in named if place.owns(p)} for place in self._places()}
        return [(place, payload) for place, payload, path in listing if path not in kept[place]]

    def _record_paths(self) -> list[str]:
        """The payload paths every record of this index names, whatever its state."""
        with self.db.session() as session:
            return list(session.scalars(select(Segment.path).where(Segment.space_id == self.space_id,
                                                                   Segment.kind == self.kind)))

    def unnamed(self) -> list[str]:
        """Payloads of this index that no record names: what killed writes left, removed by the next write."""
        return [payload for _, payload in self._unnamed()]

    def sweep(self) -> list[str]:
        """Remove the payloads no record names; skipped while readers on this host are opening payloads."""
        with self.lock(fcntl.LOCK_EX, blocking=False) as held:
            if not held:
                return []
            gone = self._unnamed()
            for place in self._places():
                mine = [payload for p, payload in gone if p is place]
                if mine:
                    place.remove(mine)
                    place.sync()
        if gone:
            log.info("removed %d unused payloads of %s", len(gone), self.stem)
        return [payload for _, payload in gone]

    def remove_payloads(self, paths: Sequence[str]) -> None:
        """Remove the payloads of segment records that were deleted (nothing names them any more)."""
        with self.lock(fcntl.LOCK_EX):
            for place in self._places():
                mine = {p for p in paths if place.owns(p)}
                if not mine:
                    continue
                place.remove_recorded(sorted(mine), self.index_name, self.dim)
                place.sync()

    # -- whole-index writes ---------------------------------------------------------------------------------
    def vectors_at(self, version: int | None, *, ids: np.ndarray | None = None,
                   progress: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) from the store: the rows a reader at ``version`` sees, or only those of ``ids``."""
        with self.db.session() as session:
            if ids is None:
                return read_vectors(session, self.rows(version), self.dim, total=self.store_count(session, version),
                                    desc=f"read {self.kind_name} vectors", progress=progress)
            parts = [read_vectors(session, self.rows(None).where(self._key().in_([int(i) for i in ids[s:s + IN_CHUNK]])),
                                  self.dim, total=0, desc="", progress=False) for s in range(0, ids.size, IN_CHUNK)]
        got_ids = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, np.int64)
        got = np.concatenate([p[1] for p in parts]) if parts else np.empty((0, self.dim), np.float32)
        return got_ids, got

    @abstractmethod
    def _key(self) -> Any:
        """The primary-key column of the rows."""

    def rebuild(self, factory: str | None = None, *, progress: bool | None = None) -> Segment | None:
        """One new segment from the store's vectors alone (no encoding), replacing every segment; ``factory``
        changes the index type (or moves the index to this command's place). Writes made meanwhile are kept."""
        with self.db.session() as session:
            factory = self.place.check_factory(factory, self.configured_factory(session))  # a bad --factory first
        with ReaderLeaseHolder(self.db) as lease:  # the rows of read_at stay until the publish tombstones them
            read_at = lease.hold_current()
            with self.db.session() as session:
                sources = self.segments(session, read_at)
                groups = self.groups_at(session, read_at)
            ids, vectors = self.vectors_at(read_at, progress=progress)
            built = self.build(ids, vectors, groups=groups, factory=factory, fresh=True)
            with self.discarding(built), self.db.transaction() as session:
                version = bump_version(session)
                seg = self.replace_segments(session, sources, built, read_at, version)
        log.info("rebuilt the %s index: %d vectors, type %s", self.kind_name, built.ids.size, factory)
        return seg

    @abstractmethod
    def groups_at(self, session: Session, version: int | None) -> list[int]:
        """The write groups whose rows a reader at ``version`` (None: now) sees."""


__all__ = ["Built", "IndexCheck", "LostSegment", "SegmentedIndex", "StaleIndexError", "columns_by_id", "read_vectors"]
