"""The gallery: items of any modality, stored with their metadata and vectors and indexed per (space, modality).

An item keeps the encoder's output (``raw``) and its vector in the space (``vector``, through the head that was
active when it was added), so activating another head re-projects the gallery without re-encoding anything.
Adding writes the items (a pending batch) and a segment of their vectors first and publishes both in one short
commit; removing stamps the items deleted and tombstones them; re-projecting replaces every segment by one.
"""

from __future__ import annotations

import difflib
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from unibind.indexer.store.removal import reap_abandoned
from unibind.indexer.store.vacuum import delete_items, tidy
from unibind.indexer.index.data_home import DataHome
from unibind.indexer.runtime.device import Device
from unibind.indexer.runtime.lease import Heartbeat, current_owner
from unibind.indexer.index.gallery import GalleryIndex
from unibind.indexer.index.places import check_factory
from unibind.indexer.index.readers import ReaderLeaseHolder
from unibind.indexer.modalities.versions import active_head, load_head
from unibind.indexer.modalities.projection import Projection
from unibind.indexer.runtime.vectors import from_bytes, normalize, to_bytes
from unibind.schema import BatchStatus, Database, Head, Item, ItemBatch, ItemField, Modality, ModalityKind
from unibind.schema.errors import Conflict, InvalidInput, NotFound
from unibind.schema.store_state import bump_version
from unibind.schema.versions import item_visible, live_item

log = logging.getLogger(__name__)

INSERT_CHUNK = 2_000
MAX_SUGGESTED_FROM = 10_000  # distinct labels read to suggest a close one for an unknown label
FIELD_VALUE_MAX = 500  # longer strings are kept in ``meta`` but not indexed for --where


@dataclass(frozen=True)
class NewItem:
    uri: str | None
    label: str | None = None
    meta: dict[str, Any] | None = None


@dataclass(frozen=True)
class AddReport:
    modality: str
    added: int
    total: int
    via: str  # "head vN" or "zero-shot"
    factory: str
    index_path: str
    seconds: float


def gallery_index(db: Database, home: Path, device: Device, modality: Modality) -> GalleryIndex:
    return GalleryIndex(db, modality, DataHome(db, home), device, modality.space.dim)


def canonical(value: Any) -> str | None:
    """A scalar metadata value as the text ``--where key=value`` compares with; None for lists and objects."""
    if isinstance(value, str):
        return value if len(value) <= FIELD_VALUE_MAX else None
    if value is None or isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return None


def field_rows(item_id: int, meta: dict[str, Any] | None) -> list[dict[str, Any]]:
    rows = []
    for key, value in (meta or {}).items():
        text = canonical(value)
        if text is not None and len(key) <= 200:
            rows.append({"item_id": item_id, "key": key, "value": text})
    return rows


def add_items(
    db: Database,
    home: Path,
    device: Device,
    projection: Projection,
    items: Sequence[NewItem],
    raw: np.ndarray,
    *,
    factory: str | None = None,
) -> AddReport:
    """Project ``raw`` [N, input_dim] into the space and add the items: their rows (a pending batch) and a segment
    of their vectors are written first, then one short commit publishes both."""
    start = time.perf_counter()
    if projection.modality_id is None:
        raise NotFound(f"modality {projection.name!r} is not registered")
    if len(items) != len(raw):
        raise ValueError(f"{len(items)} items for {len(raw)} vectors")
    if not len(items):
        raise InvalidInput("no items to add")
    if factory:
        check_factory(DataHome(db, home), db.vectors, projection.space_dim, factory)  # before any projecting
    vectors = projection.project(raw)  # [N, d]
    reap_abandoned(db)
    with db.session() as session:
        modality = session.get(Modality, projection.modality_id)
        if modality is None:
            raise NotFound(f"modality {projection.name!r} was removed while the items were encoded")
        _ = modality.space
        index = gallery_index(db, home, device, modality)
        current = index.configured_factory(session)
    switch = bool(factory) and current is not None and index.place.check_factory(factory, None) != current
    with db.transaction() as session:
        batch = ItemBatch(modality_id=modality.id, status=BatchStatus.PENDING, owner=current_owner(),
                          heartbeat_at=datetime.now(timezone.utc))
        session.add(batch)
        session.flush()
        batch_id = batch.id
    try:
        with Heartbeat(lambda: _beat(db, batch_id), name="unibind-gallery-batch"):
            ids, skipped = _write_items(db, modality.id, batch_id, projection.head_id, items, raw, vectors)
            built = index.build(ids, vectors, groups=[batch_id], factory=factory)
        with index.discarding(built), db.transaction() as session:
            version = bump_version(session)
            head = active_head(session, modality)
            if (head.id if head is not None else None) != projection.head_id:
                raise Conflict(f"the active {modality.name} head changed while the items were encoded; add them "
                               "again")
            batch = session.get(ItemBatch, batch_id)
            if batch is None or batch.status is not BatchStatus.PENDING:
                raise Conflict("this gallery add was removed by another process that took it for dead (no "
                               "heartbeat for longer than the lease); add the items again")
            batch.status, batch.published_version = BatchStatus.COMPLETE, version
            batch.owner = batch.heartbeat_at = None
            index.publish(session, built, version)
            total = index.count(session)
    except BaseException:
        _discard_batch(db, batch_id)
        raise
    if switch:
        log.info("switching the %s gallery index from %s to %s", modality.name, current, factory)
        index.rebuild(factory)
    tidy(db, home, device, [index])
    if skipped:
        log.warning("%d metadata fields are stored but not filterable with --where (lists, objects, keys over 200 "
                    "or strings over %d characters)", skipped, FIELD_VALUE_MAX)
    seconds = time.perf_counter() - start
    log.info("added %d %s items in %.1fs", len(items), modality.name, seconds)
    with db.session() as session:
        kind = index.factory(session)
    return AddReport(modality.name, len(items), total, projection.describe().split("(")[-1].rstrip(")"),
                     kind, index.location, seconds)


def _write_items(db: Database, modality_id: int, batch_id: int, head_id: int | None, items: Sequence[NewItem],
                 raw: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, int]:
    """The items' rows (and their filterable fields) in the pending batch, a chunk per transaction; returns
    (their ids, how many metadata fields cannot be filtered on)."""
    ids = np.empty(len(items), dtype=np.int64)
    skipped = 0  # metadata fields --where cannot filter on: lists, objects, keys > 200 or strings > 500 chars
    for s in range(0, len(items), INSERT_CHUNK):
        chunk_items = items[s : s + INSERT_CHUNK]
        chunk = [
            {"modality_id": modality_id, "uri": it.uri, "label": it.label, "meta": it.meta or None,
             "raw": to_bytes(raw[s + j]), "vector": to_bytes(vectors[s + j]), "head_id": head_id, "batch_id": batch_id}
            for j, it in enumerate(chunk_items)
        ]
        with db.transaction() as session:
            got = session.scalars(insert(Item).returning(Item.id, sort_by_parameter_order=True), chunk).all()
            ids[s : s + len(got)] = got
            fields = [row for it, i in zip(chunk_items, got) for row in field_rows(i, it.meta)]
            skipped += sum(len(it.meta or {}) for it in chunk_items) - len(fields)
            if fields:
                session.execute(insert(ItemField), fields)
    return ids, skipped


def _beat(db: Database, batch_id: int) -> bool:
    with db.transaction() as session:
        result = session.execute(update(ItemBatch).where(ItemBatch.id == batch_id,
                                                         ItemBatch.status == BatchStatus.PENDING)
                                 .values(heartbeat_at=datetime.now(timezone.utc)))
        return bool(result.rowcount)


def _discard_batch(db: Database, batch_id: int) -> None:
    """Best effort, after a failure: remove the unpublished batch's items (the next write removes what is left)."""
    try:
        with db.transaction() as session:
            batch = session.get(ItemBatch, batch_id)
            if batch is None or batch.status is not BatchStatus.PENDING:
                return
            delete_items(session, select(Item.id).where(Item.batch_id == batch_id))
            session.delete(batch)
    except Exception as e:  # noqa: BLE001 - the original error matters more
        log.warning("could not remove the items of the failed gallery add (batch %d): %s", batch_id, e)


def reproject(
    db: Database, home: Path, device: Device, modality_id: int, *, activate: int | None = None,
    factory: str | None = None,
) -> int:
    """Re-project every item of the modality from its stored encoder output through the active head (first
    making head ``activate`` the active one), rewrite the vectors and replace the index by one new segment: the
    head switch, the vectors and the segments change in one commit. Returns the item count."""
    reap_abandoned(db)
    with db.session() as session:
        modality = session.get(Modality, modality_id)
        if modality is None:
            raise NotFound(f"no modality with id {modality_id}")
        _ = modality.space
    index = gallery_index(db, home, device, modality)
    data = index.data
    with ReaderLeaseHolder(db) as lease:  # the rows it read stay until its publish
        read_at = lease.hold_current()
        # computed before the transaction, which then only writes: the catalog lock is held briefly
        with db.session() as session:
            sources = index.segments(session, read_at)
            head = session.get(Head, activate) if activate is not None else active_head(session, modality)
            if activate is not None and (head is None or head.modality_id != modality_id):
                raise NotFound(f"head {activate} is not a head of modality {modality.name!r}")
            linear = load_head(head, data) if head is not None else None  # there and unchanged, or an error
            n = index.count(session, read_at)
            if n and linear is None and not (modality.kind is ModalityKind.IMAGE and modality.encoder == modality.space.encoder):
                raise NotFound(f"modality {modality.name!r} has no active head to project its {n} items through")
            project = linear.project if linear is not None else normalize
            stmt = (select(Item.id, Item.raw).where(item_visible(modality_id, read_at)).order_by(Item.id))
            id_parts, vec_parts = [], []
            for part in session.execute(stmt.execution_options(yield_per=INSERT_CHUNK)).partitions():
                id_parts.append(np.fromiter((r[0] for r in part), dtype=np.int64, count=len(part)))
                vec_parts.append(project(from_bytes([r[1] for r in part], modality.input_dim)))
            factory = index.place.check_factory(factory, index.configured_factory(session))
            groups = index.groups_at(session, read_at)
        head_id = head.id if head is not None else None
        ids = np.concatenate(id_parts) if id_parts else np.empty(0, dtype=np.int64)
        vectors = np.concatenate(vec_parts) if vec_parts else np.empty((0, index.dim), dtype=np.float32)
        built = index.build(ids, vectors, groups=groups, factory=factory)
        with index.discarding(built), db.transaction() as session:
            version = bump_version(session)  # first: then nothing else publishes until this commits
            now_active = active_head(session, modality)
            if activate is None and (now_active.id if now_active is not None else None) != head_id:
                raise Conflict(f"the active {modality.name} head changed meanwhile; run the command again")
            if [s.id for s in index.segments(session)] != [s.id for s in sources]:
                raise Conflict(f"the {modality.name} gallery changed while it was re-projected; run the command again")
            if activate is not None:
                session.execute(update(Head).where(Head.modality_id == modality_id).values(active=False))
                session.flush()
                session.execute(update(Head).where(Head.id == activate).values(active=True))
            for part_ids, part_vectors in zip(id_parts, vec_parts):
                session.execute(update(Item), [
                    {"id": int(i), "vector": to_bytes(v), "head_id": head_id} for i, v in zip(part_ids, part_vectors)
                ])
            index.replace_segments(session, sources, built, read_at, version)
    tidy(db, home, device, [index])
    log.info("re-projected %d %s items (%s)", ids.size, modality.name,
             f"head v{head.version}" if head is not None else "zero-shot")
    return int(ids.size)


def _remove_items(db: Database, home: Path, device: Device, modality: Modality, label: str | None = None) -> int:
    """Remove the modality's items (all, or those with ``label``) in one short commit: they are stamped deleted, and
    tombstoned in the segments that hold them (a segment whose batches all go is dropped); the vacuum removes the
    rows."""
    reap_abandoned(db)
    index = gallery_index(db, home, device, modality)
    with db.transaction() as session:
        version = bump_version(session)
        stmt = select(Item.id).where(live_item(modality.id))
        if label is not None:
            stmt = stmt.where(Item.label == label)
        ids = np.fromiter(session.scalars(stmt), dtype=np.int64)
        if not ids.size:
            raise _NothingToRemove()
        for s in range(0, ids.size, INSERT_CHUNK):
            session.execute(update(Item).where(Item.id.in_([int(i) for i in ids[s : s + INSERT_CHUNK]]))
                            .values(deleted_version=version))
        index.remove_items(session, ids, version)
    log.info("removed %d %s items", ids.size, modality.name)
    tidy(db, home, device, [index])
    return int(ids.size)


class _NothingToRemove(Exception):
    """No item matched: the transaction rolls back (the catalog version does not move)."""


def unknown_label(label: str, known: Iterable[str], where: str) -> NotFound:
    """The error for a label no item (or category) has, with the closest known ones as a suggestion."""
    close = difflib.get_close_matches(label, [k for k in known if k], n=3)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    return NotFound(f"unknown label {label!r} in {where}{hint}")


def require_label(session: Session, modality: Modality, label: str, version: int | None = None) -> None:
    """NotFound (with a suggestion) when no item of ``modality`` that a reader at ``version`` sees (None: now) has
    ``label``: a filter on it would match nothing, silently."""
    visible = item_visible(modality.id, version)  # type: ignore[arg-type]
    if session.scalar(select(Item.id).where(visible, Item.label == label).limit(1)) is None:
        known = session.scalars(select(Item.label).where(visible, Item.label.is_not(None)).distinct()
                                .limit(MAX_SUGGESTED_FROM))
        raise unknown_label(label, known, f"the {modality.name} gallery")


def remove_items(db: Database, home: Path, device: Device, modality: Modality, label: str | None = None) -> int:
    """Remove the modality's items (all, or those with ``label``); returns how many (0: nothing changed)."""
    try:
        return _remove_items(db, home, device, modality, label)
    except _NothingToRemove:
        return 0


@dataclass(frozen=True)
class GallerySummary:
    modality: str
    kind: str
    input_dim: int
    items: int
    labels: int
    heads_used: list[int | None]


def summarize(session: Session, modalities: Sequence[Modality]) -> list[GallerySummary]:
    """Item counts per modality (with distinct labels and the head ids their vectors came through)."""
    out = []
    for m in modalities:
        n, labels = session.execute(
            select(func.count(Item.id), func.count(func.distinct(Item.label))).where(live_item(m.id))
        ).one()
        heads = list(session.scalars(select(Item.head_id).where(live_item(m.id)).distinct()))
        out.append(GallerySummary(m.name, m.kind.value, m.input_dim, int(n), int(labels), heads))
    return out
