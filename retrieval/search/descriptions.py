"""Nearest descriptions to a text query: the first retrieval call, and the check that ingestion worked."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select

from unibind.indexer.store.contents import description_index, find_space
from unibind.indexer.runtime.device import Device
from unibind.indexer.encoders.base import Encoder
from unibind.indexer.encoders.factory import build_encoder
from unibind.indexer.index.vector_store import VectorStore
from unibind.indexer.runtime.vectors import normalize
from unibind.schema import Category, Corpus, CorpusStatus, Database, Description
from unibind.schema.database import id_in

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DescriptionHit:
    id: int
    score: float
    text: str
    category: str
    corpus: str


class DescriptionSearch:
    """Loads a space's encoder and checked index once; answers many queries."""

    def __init__(self, db: Database, home: Path, device: Device, encoder: str | None = None) -> None:
        self.db = db
        with db.session() as session:
            self.space = find_space(session, encoder)
        self.encoder: Encoder = build_encoder(self.space.encoder, device)
        self.store: VectorStore = description_index(db, self.space, home, device).load()

    def search(self, texts: Sequence[str], k: int = 10) -> list[list[DescriptionHit]]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        queries = self.encoder.encode_text(list(texts))  # [B, d]
        return self.search_vectors(queries, k)

    def search_vectors(self, queries: np.ndarray, k: int) -> list[list[DescriptionHit]]:
        queries = normalize(queries)  # [B, d]
        if self.store.ntotal == 0:
            return [[] for _ in range(len(queries))]
        scores, ids = self.store.search(queries, min(k, self.store.ntotal))  # [B, k]
        rows = self._hydrate({int(i) for i in ids.ravel() if i >= 0})
        return [
            [DescriptionHit(int(i), float(s), *rows[int(i)]) for s, i in zip(srow, irow) if int(i) in rows]
            for srow, irow in zip(scores, ids)
        ]

    def _hydrate(self, ids: set[int]) -> dict[int, tuple[str, str, str]]:
        """One query for all hits; rows of incomplete corpora never come back."""
        if not ids:
            return {}
        stmt = (
            select(Description.id, Description.text, Category.name, Corpus.name)
            .join(Category, Description.category_id == Category.id)
            .join(Corpus, Description.corpus_id == Corpus.id)
            .where(id_in(Description.id, ids, self.db.backend), Corpus.status == CorpusStatus.COMPLETE)
        )
        with self.db.session() as session:
            return {i: (text, cat, corpus) for i, text, cat, corpus in session.execute(stmt)}
