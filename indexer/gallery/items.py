"""The gallery: items of any modality, stored with their metadata and vectors and indexed per (space, modality).

An item keeps the encoder's output (``raw``) and its vector in the space (``vector``, through the head that was
active when it was added), so activating another head re-projects the gallery without re-encoding anything.
Adding, re-projecting and removing publish rows and the index file in one commit.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from unibind.indexer.store.removal import reap_abandoned
from unibind.indexer.index.data_home import DataHome
from unibind.indexer.runtime.device import Device
from unibind.indexer.index.gallery import GalleryIndex
from unibind.indexer.index.places import check_factory
from unibind.indexer.modalities.versions import active_head, load_head
from unibind.indexer.modalities.projection import Projection
from unibind.indexer.index.vector_store import VectorStore
from unibind.indexer.runtime.vectors import from_bytes, normalize, to_bytes
from unibind.schema import Database, Head, Item, ItemField, Modality, ModalityKind
from unibind.schema.errors import Conflict, InvalidInput, NotFound
from unibind.schema.store_state import bump_version

log = logging.getLogger(__name__)

INSERT_CHUNK = 2_000
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


def _store_for_write(index: GalleryIndex, factory: str | None) -> VectorStore:
    """The current index, or a new one with ``factory`` (rebuilt from the store if it holds items)."""
    with index.db.session() as session:
        current, n = index.factory(session), index.count(session)
    if factory and factory != current:
        if n:
            log.info("switching the %s gallery index from %s to %s", index.name, current, factory)
        return index.build_from_store(factory)
    return index.current_or_rebuilt()


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
    """Project ``raw`` [N, input_dim] into the space and add the items; rows and index file in one commit."""
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
    with index.lock():
        store = _store_for_write(index, factory)
        with db.transaction() as session:
            bump_version(session)
            head = active_head(session, modality)
            if (head.id if head is not None else None) != projection.head_id:
                raise Conflict(f"the active {modality.name} head changed while the items were encoded; add them again")
            ids = np.empty(len(items), dtype=np.int64)
            skipped = 0  # metadata fields --where cannot filter on: lists, objects, keys > 200 or strings > 500 chars
            for s in range(0, len(items), INSERT_CHUNK):
                chunk = [
                    {"modality_id": modality.id, "uri": it.uri, "label": it.label, "meta": it.meta or None,
                     "raw": to_bytes(raw[s + j]), "vector": to_bytes(vectors[s + j]), "head_id": projection.head_id}
                    for j, it in enumerate(items[s : s + INSERT_CHUNK])
                ]
                got = session.scalars(insert(Item).returning(Item.id, sort_by_parameter_order=True), chunk).all()
                ids[s : s + len(got)] = got
                chunk_items = items[s : s + INSERT_CHUNK]
                fields = [row for it, i in zip(chunk_items, got) for row in field_rows(i, it.meta)]
                skipped += sum(len(it.meta or {}) for it in chunk_items) - len(fields)
                if fields:
                    session.execute(insert(ItemField), fields)
            store.add(ids, vectors)
            index.save(session, store)
            total = store.ntotal
    if skipped:
        log.warning("%d metadata fields are stored but not filterable with --where (lists, objects, keys over 200 "
                    "or strings over %d characters)", skipped, FIELD_VALUE_MAX)
    seconds = time.perf_counter() - start
    log.info("added %d %s items in %.1fs", len(items), modality.name, seconds)
    return AddReport(modality.name, len(items), total, projection.describe().split("(")[-1].rstrip(")"),
                     store.factory, index.location, seconds)


def reproject(
    db: Database, home: Path, device: Device, modality_id: int, *, activate: int | None = None,
    factory: str | None = None,
) -> int:
    """Re-project every item of the modality from its stored encoder output through the active head (first
    making head ``activate`` the active one), rewrite the vectors and rebuild the index: the head switch,
    the vectors and the index file change in one commit, under the gallery's lock. Returns the item count."""
    reap_abandoned(db)
    with db.session() as session:
        modality = session.get(Modality, modality_id)
        if modality is None:
            raise NotFound(f"no modality with id {modality_id}")
        _ = modality.space
    index = gallery_index(db, home, device, modality)
    data = index.data
    with index.lock():
        # computed before the transaction, which then only writes: the catalog lock is held briefly
        with db.session() as session:
            head = session.get(Head, activate) if activate is not None else active_head(session, modality)
            if activate is not None and (head is None or head.modality_id != modality_id):
                raise NotFound(f"head {activate} is not a head of modality {modality.name!r}")
            linear = load_head(head, data) if head is not None else None  # there and unchanged, or an error
            n = index.count(session)
            if n and linear is None and not (modality.kind is ModalityKind.IMAGE and modality.encoder == modality.space.encoder):
                raise NotFound(f"modality {modality.name!r} has no active head to project its {n} items through")
            project = linear.project if linear is not None else normalize
            stmt = select(Item.id, Item.raw).where(Item.modality_id == modality_id).order_by(Item.id)
            id_parts, vec_parts = [], []
            for part in session.execute(stmt.execution_options(yield_per=INSERT_CHUNK)).partitions():
                id_parts.append(np.fromiter((r[0] for r in part), dtype=np.int64, count=len(part)))
                vec_parts.append(project(from_bytes([r[1] for r in part], modality.input_dim)))
            factory = factory or index.factory(session)
        head_id = head.id if head is not None else None
        ids = np.concatenate(id_parts) if id_parts else np.empty(0, dtype=np.int64)
        vectors = np.concatenate(vec_parts) if vec_parts else np.empty((0, index.dim), dtype=np.float32)
        store = index.new_store(factory, ids, vectors)
        with db.transaction() as session:
            bump_version(session)  # first: then nothing else publishes until this commits
            now_active = active_head(session, modality)
            if activate is None and (now_active.id if now_active is not None else None) != head_id:
                raise Conflict(f"the active {modality.name} head changed meanwhile; run the command again")
            if activate is not None:
                session.execute(update(Head).where(Head.modality_id == modality_id).values(active=False))
                session.flush()
                session.execute(update(Head).where(Head.id == activate).values(active=True))
            for part_ids, part_vectors in zip(id_parts, vec_parts):
                session.execute(update(Item), [
                    {"id": int(i), "vector": to_bytes(v), "head_id": head_id} for i, v in zip(part_ids, part_vectors)
                ])
            index.save(session, store)  # Busy when another host changed the gallery since the lock was taken
    log.info("re-projected %d %s items (%s)", store.ntotal, modality.name,
             f"head v{head.version}" if head is not None else "zero-shot")
    return store.ntotal


def remove_items(db: Database, home: Path, device: Device, modality: Modality, label: str | None = None) -> int:
    """Remove the modality's items (all, or those with ``label``) from the store and the index, in one commit."""
    reap_abandoned(db)
    index = gallery_index(db, home, device, modality)
    with index.lock():
        with db.session() as session:
            stmt = select(Item.id).where(Item.modality_id == modality.id)
            if label is not None:
                stmt = stmt.where(Item.label == label)
            ids = np.fromiter(session.scalars(stmt), dtype=np.int64)
        if not ids.size:
            return 0
        store = index.current_or_rebuilt()
        if not store.remove(ids):
            with db.session() as session:
                keep_ids, keep = index.vectors(session)
            mask = ~np.isin(keep_ids, ids)
            store = index.new_store(store.factory, keep_ids[mask], keep[mask])
        with db.transaction() as session:
            bump_version(session)
            for s in range(0, ids.size, INSERT_CHUNK):
                session.execute(delete(Item).where(Item.id.in_([int(i) for i in ids[s : s + INSERT_CHUNK]])))
            index.save(session, store)
    log.info("removed %d %s items", ids.size, modality.name)
    return int(ids.size)


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
            select(func.count(Item.id), func.count(func.distinct(Item.label))).where(Item.modality_id == m.id)
        ).one()
        heads = list(session.scalars(select(Item.head_id).where(Item.modality_id == m.id).distinct()))
        out.append(GallerySummary(m.name, m.kind.value, m.input_dim, int(n), int(labels), heads))
    return out
