"""The FAISS file of a space's descriptions: derived state, recorded, checked, rebuildable from the store.

Only descriptions of *complete* corpora are in the file. The file's ``IndexFile`` record says what it holds
(corpora, id digest, count, file digest and size); loading compares that with the store, and ``verify`` also
re-hashes the file and re-reads its ids.
"""

from __future__ import annotations

import logging

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from unibind.indexer.index.data_home import DataHome
from unibind.indexer.runtime.device import Device
from unibind.indexer.index.stamped import IndexCheck, StaleIndexError, StampedIndex, columns_by_id, read_vectors
from unibind.indexer.index.vector_store import VectorStore
from unibind.schema import Corpus, CorpusStatus, Database, Description, IndexFile, Space

log = logging.getLogger(__name__)

KIND = "descriptions"

__all__ = ["DescriptionIndex", "IndexCheck", "StaleIndexError"]


class DescriptionIndex(StampedIndex):
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
    def complete_corpora(self, session: Session) -> dict[int, int]:
        """{corpus id: description count} of the space's complete corpora."""
        stmt = select(Corpus.id, Corpus.n_descriptions).where(
            Corpus.space_id == self.space_id, Corpus.status == CorpusStatus.COMPLETE
        )
        return {cid: n for cid, n in session.execute(stmt)}

    def store_ids(self, session: Session) -> np.ndarray:
        stmt = (
            select(Description.id)
            .join(Corpus, Description.corpus_id == Corpus.id)
            .where(Corpus.space_id == self.space_id, Corpus.status == CorpusStatus.COMPLETE)
        )
        return np.fromiter(session.scalars(stmt), dtype=np.int64)

    def _corpus_ids(self, session: Session) -> list[int]:
        return list(self.complete_corpora(session))

    def _stamp_problems(self, session: Session, rec: IndexFile | None) -> list[str]:
        corpora = self.complete_corpora(session)
        if rec is None:
            return ["no index file has been recorded for this space"] if corpora else []
        problems = []
        if sorted(rec.corpus_ids) != sorted(corpora):
            problems.append(f"file holds corpora {sorted(rec.corpus_ids)}, the store has complete corpora {sorted(corpora)}")
        if rec.n_vectors != sum(corpora.values()):
            problems.append(f"file holds {rec.n_vectors} vectors, the store has {sum(corpora.values())} descriptions")
        return problems

    # -- write ----------------------------------------------------------------------------------
    def build_from_store(
        self, factory: str | None = None, *, exclude_corpus: int | None = None, progress: bool | None = None
    ) -> VectorStore:
        """A new index from the stored vectors of complete corpora (no encoding), less ``exclude_corpus``."""
        with self.db.session() as session:
            factory = factory or self.factory(session)
            stmt = (
                select(Description.id, Description.vector)
                .join(Corpus, Description.corpus_id == Corpus.id)
                .where(Corpus.space_id == self.space_id, Corpus.status == CorpusStatus.COMPLETE)
                .order_by(Description.id)
            )
            if exclude_corpus is not None:
                stmt = stmt.where(Corpus.id != exclude_corpus)
            ids, vectors = read_vectors(session, stmt, self.dim, total=sum(self.complete_corpora(session).values()),
                                        desc="read vectors", progress=progress)
        return self.new_store(factory, ids, vectors)

    def without_corpus(self, corpus_id: int) -> VectorStore:
        """The current index less one corpus's vectors (removed, or rebuilt without them when the index
        type cannot remove ids); call under lock()."""
        store = self.current_or_rebuilt()
        with self.db.session() as session:
            ids = np.fromiter(session.scalars(select(Description.id).where(Description.corpus_id == corpus_id)), dtype=np.int64)
        if not store.remove(ids):
            store = self.build_from_store(store.factory, exclude_corpus=corpus_id)
        return store
