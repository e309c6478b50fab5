"""The description index of a space: the segments holding the vectors of its complete corpora.

Each ingest writes one segment holding its corpus alone, so deleting (or replacing) a corpus drops that segment;
once compaction has merged it with others, its rows are tombstoned in the merged segment instead. The write groups
of a description index are its corpora: a segment's ``group_ids`` say which corpora it holds, and a corpus is
always in exactly one live segment.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from unibind.indexer.index.data_home import DataHome
from unibind.indexer.index.segments import IndexCheck, SegmentedIndex, StaleIndexError, columns_by_id
from unibind.indexer.runtime.device import Device
from unibind.schema import Corpus, Database, Description, Segment, Space
from unibind.schema.versions import corpus_visible

log = logging.getLogger(__name__)

KIND = "descriptions"

__all__ = ["DescriptionIndex", "IndexCheck", "StaleIndexError"]


class DescriptionIndex(SegmentedIndex):
    """The description index of one space, bound to a database, a data folder and a device."""

    def __init__(self, db: Database, space: Space, data: DataHome, device: Device) -> None:
        super().__init__(db, space.id, space.dim, data, device, KIND, f"space-{space.id}-{KIND}")
        self.space_name = space.encoder

    @property
    def kind_name(self) -> str:
        return f"description ({self.space_name})"

    field_types = {"category": "int64", "corpus": "int64"}  # Milvus columns: label and corpus filters run there

    def fields_of(self, session: Session, ids: np.ndarray) -> dict[str, np.ndarray]:
        cols = columns_by_id(session, Description.id, {"category": Description.category_id,
                                                         "corpus": Description.corpus_id}, ids)
        return {name: np.asarray(values, dtype=np.int64) for name, values in cols.items()}

    # -- what the store says ------------------------------------------------------------------------
    def visible_corpora(self, session: Session, version: int | None = None) -> dict[int, int]:
        """{corpus id: description count} of the space's corpora a reader at ``version`` (None: now) sees."""
        stmt = select(Corpus.id, Corpus.n_descriptions).where(Corpus.space_id == self.space_id, corpus_visible(version))
        return {cid: n for cid, n in session.execute(stmt)}

    def store_ids(self, session: Session, version: int | None = None) -> np.ndarray:
        stmt = (select(Description.id).join(Corpus, Description.corpus_id == Corpus.id)
                .where(Corpus.space_id == self.space_id, corpus_visible(version)))
        return np.fromiter(session.scalars(stmt), dtype=np.int64)

    def store_count(self, session: Session, version: int | None = None) -> int:
        return int(sum(self.visible_corpora(session, version).values()))

    def rows(self, version: int | None = None) -> Select[Any]:
        return (select(Description.id, Description.vector).join(Corpus, Description.corpus_id == Corpus.id)
                .where(Corpus.space_id == self.space_id, corpus_visible(version)).order_by(Description.id))

    def _key(self) -> Any:
        return Description.id

    def groups_at(self, session: Session, version: int | None) -> list[int]:
        return sorted(self.visible_corpora(session, version))

    def deleted_since(self, session: Session, version: int, ids: np.ndarray) -> np.ndarray:
        stmt = (select(Description.id).join(Corpus, Description.corpus_id == Corpus.id)
                .where(Corpus.space_id == self.space_id, Corpus.deleted_version > version))
        gone = np.fromiter(session.scalars(stmt), dtype=np.int64)
        return np.intersect1d(gone, ids)

    def _store_problems(self, session: Session, segments: list[Segment], version: int) -> list[str]:
        corpora = self.visible_corpora(session, version)
        held: dict[int, int] = {}
        for seg in segments:
            for cid in seg.group_ids or []:
                held[cid] = held.get(cid, 0) + 1
        problems = []
        missing = sorted(set(corpora) - set(held))
        if missing:
            problems.append(f"no segment holds corpora {missing}")
        twice = sorted(c for c, n in held.items() if n > 1)
        if twice:
            problems.append(f"corpora {twice} are in more than one segment")
        return problems

    # -- removal, in the publishing transaction --------------------------------------------------------
    def remove_corpus(self, session: Session, corpus_id: int, version: int) -> int:
        """Take a corpus out of the index at ``version``: drop the segment that holds it alone, or tombstone its
        rows in the segment it was merged into. Returns the tombstones written."""
        written = 0
        for seg in self.holders(session, corpus_id):
            if list(seg.group_ids) == [corpus_id]:
                self.drop(session, [seg], version)
                continue
            ids = np.fromiter(session.scalars(select(Description.id).where(Description.corpus_id == corpus_id)),
                              dtype=np.int64)
            written += self.tombstone(session, ids, version, [seg])
        return written
