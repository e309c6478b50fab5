"""The FAISS file of one modality's gallery: derived state, stamped, checked, rebuildable from the store.

Ids are item primary keys. Each file written gets an ``IndexFile`` row of kind ``items:<modality id>``.
"""

from __future__ import annotations

import logging
import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from unibind.indexer.index.data_home import DataHome
from unibind.indexer.runtime.device import Device
from unibind.indexer.index.stamped import StampedIndex, columns_by_id, read_vectors
from unibind.indexer.index.vector_store import VectorStore
from unibind.schema import Database, Head, IndexFile, Item, Modality

log = logging.getLogger(__name__)


class GalleryIndex(StampedIndex):
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
    def count(self, session: Session) -> int:
        return int(session.scalar(select(func.count(Item.id)).where(Item.modality_id == self.modality_id)) or 0)

    def store_ids(self, session: Session) -> np.ndarray:
        return np.fromiter(session.scalars(select(Item.id).where(Item.modality_id == self.modality_id)), dtype=np.int64)

    def _stamp_problems(self, session: Session, rec: IndexFile | None) -> list[str]:
        n = self.count(session)
        if rec is None:
            return [f"no index file has been recorded for the {self.name} gallery"] if n else []
        problems = [f"file holds {rec.n_vectors} vectors, the store has {n} {self.name} items"] if rec.n_vectors != n else []
        active = select(Head.id).where(Head.modality_id == self.modality_id, Head.active.is_(True)).scalar_subquery()
        other = session.scalar(select(func.count(Item.id)).where(
            Item.modality_id == self.modality_id, Item.head_id.is_distinct_from(active))) or 0
        if other:
            problems.append(f"{other} {self.name} items were projected through another head than the active one")
        return problems

    # -- read, rebuild -------------------------------------------------------------------------------
    def vectors(self, session: Session, ids: np.ndarray | None = None, *, progress: bool | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the modality's items from the store (all, or those in ``ids``), by id."""
        stmt = select(Item.id, Item.vector).where(Item.modality_id == self.modality_id).order_by(Item.id)
        if ids is not None:
            stmt = stmt.where(Item.id.in_([int(i) for i in ids]))
        total = self.count(session) if ids is None else len(ids)
        return read_vectors(session, stmt, self.dim, total=total, desc=f"read {self.name} vectors",
                            progress=progress if ids is None else False)

    def build_from_store(self, factory: str | None = None, *, progress: bool | None = None) -> VectorStore:
        with self.db.session() as session:
            factory = factory or self.factory(session)
            ids, vectors = self.vectors(session, progress=progress)
        return self.new_store(factory, ids, vectors)
