"""The gallery index of one modality: segments whose ids are item primary keys, kind ``items:<modality id>``.

The write groups of a gallery are its batches (one per gallery add): each add writes one segment holding its batch;
removing items tombstones them in the segment that holds their batch (or drops a segment whose one batch is
removed whole); a head switch re-projects every item into one new segment that replaces all others.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from unibind.indexer.index.data_home import DataHome
from unibind.indexer.index.segments import IN_CHUNK, SegmentedIndex, columns_by_id
from unibind.indexer.runtime.device import Device
from unibind.schema import Database, Head, Item, Modality, Segment
from unibind.schema.versions import item_visible

log = logging.getLogger(__name__)


class GalleryIndex(SegmentedIndex):
    """The gallery index of one (space, modality), bound to a database, a folder and a device."""

    rebuild_command = "unibind gallery rebuild"

    def __init__(self, db: Database, modality: Modality, data: DataHome, device: Device, space_dim: int) -> None:
        stem = f"space-{modality.space_id}-items-{modality.name}"
        super().__init__(db, modality.space_id, space_dim, data, device, f"items:{modality.id}", stem)
        self.modality_id = modality.id
        self.name = modality.name

    @property
    def kind_name(self) -> str:
        return f"{self.name} gallery"

    field_types = {"label": "str"}  # the Milvus column a label filter runs on ("" for an item without a label)

    def fields_of(self, session: Session, ids: np.ndarray) -> dict[str, np.ndarray]:
        labels = columns_by_id(session, Item.id, {"label": Item.label}, ids, fill={"label": ""})["label"]
        return {"label": np.array(labels, dtype=str) if labels else np.empty(0, dtype="<U1")}

    # -- what the store says ------------------------------------------------------------------------
    def count(self, session: Session, version: int | None = None) -> int:
        return int(session.scalar(select(func.count(Item.id)).where(item_visible(self.modality_id, version))) or 0)

    store_count = count

    def store_ids(self, session: Session, version: int | None = None) -> np.ndarray:
        return np.fromiter(session.scalars(select(Item.id).where(item_visible(self.modality_id, version))),
                           dtype=np.int64)

    def rows(self, version: int | None = None) -> Select[Any]:
        return select(Item.id, Item.vector).where(item_visible(self.modality_id, version)).order_by(Item.id)

    def _key(self) -> Any:
        return Item.id

    def groups_at(self, session: Session, version: int | None) -> list[int]:
        return sorted(set(session.scalars(select(Item.batch_id).where(item_visible(self.modality_id, version))
                                          .distinct())))

    def remove_items(self, session: Session, ids: np.ndarray, version: int) -> int:
        """Take the items ``ids`` (stamped deleted at ``version`` in this transaction) out of the index: the segments
        that hold their batches are dropped when none of their items is left, else the items get tombstones there.
        Returns the tombstones written."""
        by_batch: dict[int, list[int]] = {}
        for s in range(0, ids.size, IN_CHUNK):
            chunk = [int(i) for i in ids[s : s + IN_CHUNK]]
            for batch, item in session.execute(select(Item.batch_id, Item.id).where(Item.id.in_(chunk))):
                by_batch.setdefault(batch, []).append(item)
        written = 0
        for seg in self.segments(session):
            mine = [i for g in (seg.group_ids or []) for i in by_batch.get(g, ())]
            if not mine:
                continue
            left = session.scalar(select(func.count(Item.id)).where(Item.batch_id.in_(seg.group_ids),
                                                                    Item.deleted_version.is_(None))) or 0
            if left:
                written += self.tombstone(session, np.asarray(mine, dtype=np.int64), version, [seg])
            else:
                self.drop(session, [seg], version)
        return written

    def deleted_since(self, session: Session, version: int, ids: np.ndarray) -> np.ndarray:
        stmt = select(Item.id).where(Item.modality_id == self.modality_id, Item.deleted_version > version)
        return np.intersect1d(np.fromiter(session.scalars(stmt), dtype=np.int64), ids)

    def _store_problems(self, session: Session, segments: list[Segment], version: int) -> list[str]:
        active = select(Head.id).where(Head.modality_id == self.modality_id, Head.active.is_(True)).scalar_subquery()
        other = session.scalar(select(func.count(Item.id)).where(
            item_visible(self.modality_id, None), Item.head_id.is_distinct_from(active))) or 0
        if other:
            return [f"{other} {self.name} items were projected through another head than the active one"]
        return []
