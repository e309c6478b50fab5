"""The vacuum: what no reader can see any more goes, so nothing dead stays in the store or its folders.

Deleting a corpus, removing gallery items and merging segments only stamp versions (``unibind.schema.versions``):
readers pinned to an older catalog version still see what was there. The vacuum runs after every write (and in
``unibind index rebuild`` / ``unibind index compact``):

1. the writes whose process died go (ingests, gallery batches, unpublished segments and their payloads);
2. in one short transaction under the catalog lock: the *horizon* H is the current catalog version, or the oldest
   version a live reader lease still answers from (``unibind.indexer.index.readers``); the store records it, and the
   records of segments dropped at or before H (with their tombstones) go;
3. then, outside the lock (nothing can see them): the rows of corpora deleted at or before H, and the items removed
   at or before H, in chunks; gallery batches left empty;
4. the payloads of the segments that went, and payloads no record names (debris of killed writes).

A segment in Milvus is rows of its collection, which are never listed: its rows are deleted *before* its record
goes (a dead writer's record is first marked ``reaped``, so that writer can no longer beat or publish; a dropped
segment's record stays until its rows are gone). Killed in between, the record is still there for the next vacuum.

A reader that started before the horizon moved past its version finds it out (``catalog_state``) and refreshes
before it answers. Killed at any instant, the vacuum leaves what the next one finishes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from typing import Any

from sqlalchemy import Select, delete, exists, func, select, update
from sqlalchemy.orm import Session

from unibind.indexer.index.data_home import DataHome
from unibind.indexer.index.descriptions import DescriptionIndex
from unibind.indexer.index.gallery import GalleryIndex
from unibind.indexer.index.places import MILVUS_PREFIX
from unibind.indexer.index.segments import SegmentedIndex
from unibind.indexer.runtime.device import Device
from unibind.indexer.runtime.lease import is_alive
from unibind.indexer.index.readers import oldest_reader
from unibind.schema import (BatchStatus, Corpus, CorpusStatus, Database, Description, Item, ItemBatch, ItemField,
                            Modality, Segment, SegmentState, Space, StoreState, Tombstone)
from unibind.schema.settings import parse_vectors_spec
from unibind.schema.store_state import ROW, catalog_state, lock_catalog

log = logging.getLogger(__name__)

CHUNK = 5_000  # rows deleted per statement
REAPED = "reaped"  # the owner of a dead writer's Milvus segment whose rows are being removed


@dataclass(frozen=True)
class Doomed:
    """A segment whose payload goes: its index, its record path, and the record to forget once the payload is
    gone (None: the record is already deleted)."""

    space_id: int
    kind: str
    path: str
    forget: int | None = None


@dataclass
class VacuumReport:
    horizon: int = 0
    segments: int = 0  # dropped segments removed (records and payloads)
    unfinished_segments: int = 0  # segments of dead writers
    corpora: int = 0
    descriptions: int = 0
    items: int = 0
    batches: int = 0
    payloads: list[str] = field(default_factory=list)  # payloads no record named


def indexes_of(db: Database, home: Path, device: Device) -> list[SegmentedIndex]:
    """Every index of the store: each space's descriptions and each modality's gallery."""
    data = DataHome(db, home)
    with db.session() as session:
        spaces = list(session.scalars(select(Space).order_by(Space.id)))
        modalities = list(session.scalars(select(Modality).order_by(Modality.id)))
        dims = {s.id: s.dim for s in spaces}
    out: list[SegmentedIndex] = [DescriptionIndex(db, s, data, device) for s in spaces]
    out += [GalleryIndex(db, m, data, device, dims[m.space_id]) for m in modalities if m.space_id in dims]
    return out


def reap_unfinished(db: Database, reachable_milvus: bool = True) -> list[Doomed]:
    """Remove the records of segments and gallery batches whose writer died (its rows with it); returns the
    segments whose payloads the caller removes. A Milvus segment's record is marked ``reaped`` instead and
    forgotten after its rows (``forget``); without a connection to Milvus it waits for a process that has one."""
    with db.session() as session:
        building = session.execute(select(Segment.id, Segment.owner, Segment.heartbeat_at)
                                   .where(Segment.state == SegmentState.BUILDING)).all()
        pending = session.execute(select(ItemBatch.id, ItemBatch.owner, ItemBatch.heartbeat_at)
                                  .where(ItemBatch.status == BatchStatus.PENDING)).all()
    dead_segments = [sid for sid, owner, beat in building if owner == REAPED or not is_alive(owner, beat)]
    dead_batches = [bid for bid, owner, beat in pending if not is_alive(owner, beat)]
    if not dead_segments and not dead_batches:
        return []
    gone: list[Doomed] = []
    with db.transaction() as session:
        lock_catalog(session)
        for seg in session.scalars(select(Segment).where(Segment.id.in_(dead_segments or [-1]))):
            if seg.state is SegmentState.BUILDING and (seg.owner == REAPED or not is_alive(seg.owner, seg.heartbeat_at)):
                if not seg.path.startswith(MILVUS_PREFIX):
                    gone.append(Doomed(seg.space_id, seg.kind, seg.path))
                    session.delete(seg)
                elif reachable_milvus:
                    seg.owner = REAPED  # its writer can no longer beat or publish
                    gone.append(Doomed(seg.space_id, seg.kind, seg.path, forget=seg.id))
        for batch in session.scalars(select(ItemBatch).where(ItemBatch.id.in_(dead_batches or [-1]))):
            if batch.status is BatchStatus.PENDING and not is_alive(batch.owner, batch.heartbeat_at):
                delete_items(session, select(Item.id).where(Item.batch_id == batch.id))
                session.delete(batch)
    if gone:
        log.warning("removed %d segments that killed writes left unfinished", len(gone))
    return gone


def delete_items(session: Session, ids_stmt: Select[Any]) -> int:
    """Delete the items ``ids_stmt`` selects (their metadata fields first), in chunks; returns how many."""
    ids = list(session.scalars(ids_stmt))
    for s in range(0, len(ids), CHUNK):
        chunk = ids[s : s + CHUNK]
        session.execute(delete(ItemField).where(ItemField.item_id.in_(chunk)))
        session.execute(delete(Item).where(Item.id.in_(chunk)))
    return len(ids)


def vacuum(db: Database, home: Path, device: Device, *, sweep: bool = True) -> VacuumReport:
    """Remove what no reader can see any more (see the module docstring); ``sweep``: also payloads no record
    names."""
    from unibind.indexer.store.removal import reap_abandoned

    report = VacuumReport()
    reap_abandoned(db)
    indexes = {(ix.space_id, ix.kind): ix for ix in indexes_of(db, home, device)}
    reachable_milvus = parse_vectors_spec(db.vectors).kind != "faiss"
    payloads: list[Doomed] = reap_unfinished(db, reachable_milvus)
    report.unfinished_segments = len(payloads)
    if _something_to_remove(db):
        corpora, h = _remove_records(db, report, payloads, reachable_milvus)
        _remove_rows(db, report, corpora, h)
    else:
        with db.session() as session:
            report.horizon = catalog_state(session)[1]
    by_index: dict[tuple[int, str], list[Doomed]] = {}
    for doomed in payloads:
        by_index.setdefault((doomed.space_id, doomed.kind), []).append(doomed)
    for key, group in by_index.items():  # one lock and one listing per index
        if key in indexes:
            indexes[key].remove_payloads([d.path for d in group])
            _forget(db, [d.forget for d in group if d.forget is not None])
    if sweep:
        for index in indexes.values():
            report.payloads += index.sweep()
    if report.segments or report.corpora or report.items:
        log.info("vacuum up to version %d: %d segments, %d corpora (%d descriptions), %d items removed",
                 report.horizon, report.segments, report.corpora, report.descriptions, report.items)
    return report


def _something_to_remove(db: Database) -> bool:
    """A look without the catalog lock (most writes leave nothing for the vacuum when no reader lags behind)."""
    with db.session() as session:
        return any(session.scalar(select(exists().where(condition))) for condition in (
            Segment.dropped_version.is_not(None), Corpus.status == CorpusStatus.DELETED,
            Item.deleted_version.is_not(None)))


def _forget(db: Database, segment_ids: list[int]) -> None:
    """Delete the records (and tombstones) of segments whose payloads were removed after them: dropped ones, and
    dead writers' segments marked reaped."""
    if not segment_ids:
        return
    with db.transaction() as session:
        lock_catalog(session)  # a writer joining a collection checks under it that a record still names it
        for s in range(0, len(segment_ids), CHUNK):
            chunk = segment_ids[s : s + CHUNK]
            session.execute(delete(Tombstone).where(Tombstone.segment_id.in_(chunk)))
            session.execute(delete(Segment).where(Segment.id.in_(chunk), (Segment.dropped_version.is_not(None))
                                                  | ((Segment.state == SegmentState.BUILDING)
                                                     & (Segment.owner == REAPED))))


def _remove_records(db: Database, report: VacuumReport, payloads: list[Doomed],
                    reachable_milvus: bool) -> tuple[list[int], int]:
    """Under the catalog lock: the horizon, and the records of segments dropped up to it. Returns the deleted
    corpora whose rows go now and the version up to which removed rows go."""
    with db.transaction() as session:
        lock_catalog(session)
        version, horizon = catalog_state(session)
        h = min(int(version), oldest_reader(session, int(version)))
        dropped = [seg for seg in session.scalars(select(Segment).where(Segment.dropped_version.is_not(None),
                                                                        Segment.dropped_version <= h))
                   if reachable_milvus or not seg.path.startswith(MILVUS_PREFIX)]  # else it waits for a write
        corpora = list(session.execute(select(Corpus.id, Corpus.deleted_version).where(
            Corpus.status == CorpusStatus.DELETED, Corpus.deleted_version <= h)))
        last_item = session.scalar(select(func.max(Item.deleted_version)).where(Item.deleted_version <= h))
        # the horizon moves to the newest version whose removals go now: readers of older versions lose rows
        removed = [seg.dropped_version for seg in dropped] + [v for _, v in corpora] + [last_item or 0]
        report.horizon = max(int(horizon), max(int(v) for v in removed if v is not None))
        if report.horizon > horizon:
            session.execute(update(StoreState).where(StoreState.id == ROW).values(horizon=report.horizon))
        for seg in dropped:
            report.segments += 1
            if seg.path.startswith(MILVUS_PREFIX):  # its rows go first; the record after them
                payloads.append(Doomed(seg.space_id, seg.kind, seg.path, forget=seg.id))
                continue
            payloads.append(Doomed(seg.space_id, seg.kind, seg.path))
            session.execute(delete(Tombstone).where(Tombstone.segment_id == seg.id))
            session.delete(seg)
    # rows deleted up to the horizon go (what is newer waits: its version was not passed)
    return [cid for cid, _ in corpora], report.horizon


def _remove_rows(db: Database, report: VacuumReport, corpora: list[int], h: int) -> None:
    """The rows of corpora deleted and items removed up to ``h``: nothing can see them any more, so no lock is
    needed to delete them (in chunks)."""
    for cid in corpora:
        while True:
            with db.transaction() as session:
                batch = list(session.scalars(select(Description.id).where(Description.corpus_id == cid).limit(CHUNK)))
                if not batch:
                    session.execute(delete(Corpus).where(Corpus.id == cid, Corpus.status == CorpusStatus.DELETED))
                    break
                session.execute(delete(Description).where(Description.id.in_(batch)))
                report.descriptions += len(batch)
        report.corpora += 1
    while True:
        with db.transaction() as session:
            n = delete_items(session, select(Item.id).where(Item.deleted_version <= h).limit(CHUNK))
        report.items += n
        if n < CHUNK:
            break
    with db.transaction() as session:
        empty = select(ItemBatch.id).where(ItemBatch.status == BatchStatus.COMPLETE,
                                           ~exists().where(Item.batch_id == ItemBatch.id))
        report.batches = int(session.execute(delete(ItemBatch).where(ItemBatch.id.in_(empty))).rowcount or 0)


def tidy(db: Database, home: Path, device: Device, indexes: list[SegmentedIndex]) -> None:
    """After a write has committed: compact the indexes it changed (as the policy asks) and vacuum. The write
    stands whatever happens here: a failure is logged, and the next write tries again."""
    from unibind.indexer.index.compaction import compact

    for index in indexes:
        try:
            compact(index)
        except Exception as e:  # noqa: BLE001 - the write is committed; compaction is only upkeep
            log.warning("the %s index was not compacted (%s); the next write tries again", index.kind_name, e)
    try:
        vacuum(db, home, device)
    except Exception as e:  # noqa: BLE001
        log.warning("the vacuum did not finish (%s); the next write goes on with it", e)


__all__ = ["Doomed", "REAPED", "VacuumReport", "delete_items", "indexes_of", "reap_unfinished", "tidy", "vacuum"]
