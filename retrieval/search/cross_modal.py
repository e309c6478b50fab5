"""Cross-modal search: query vectors of the space (from any modality) against a modality's gallery or the
knowledge-base descriptions, optionally filtered by label and metadata.

A search reads one catalog version from start to end: the index's segments at that version, the rows that
version sees for filters, and the hits' rows (kept for it by multi-version rows: see ``unibind.schema.versions``).
A filtered search returns exactly k results whenever k items match: the index searches among the matching ids
(a FAISS ID selector; on Milvus an ``id in [...]`` filter, or for a label or corpus filter the collection's own
scalar columns, counted in the store), and any query for which an approximate index (IVF, HNSW) found fewer is
answered exactly over the matching vectors. Hits are hydrated from the store in one query per call.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from unibind.indexer.store.contents import description_index
from unibind.indexer.runtime.device import Device
from unibind.indexer.gallery.items import (MAX_SUGGESTED_FROM, canonical, gallery_index, require_label,
                                           unknown_label)
from unibind.indexer.modalities.registry import find_modality
from unibind.indexer.index.backend import Filter
from unibind.indexer.index.exact import exact_knn
from unibind.indexer.index.fanout import SegmentSet
from unibind.indexer.index.readers import VersionGone
from unibind.indexer.runtime.vectors import from_bytes, normalize
from unibind.schema import Category, Corpus, Database, Description, Item, ItemField, Modality, Space
from unibind.schema.database import id_in
from unibind.schema.errors import Conflict, InvalidInput
from unibind.schema.store_state import catalog_state
from unibind.schema.versions import corpus_name, corpus_visible, item_visible

log = logging.getLogger(__name__)

DESCRIPTIONS = "descriptions"
SQL_IN_CHUNK = 10_000
# IVF lists probed per query unless told otherwise (FAISS's default is 1). bench/search.py, 1M x 512, IVF4096:
# nprobe 4 -> recall@10 0.985, nprobe 8 -> 0.994, at many times flat's queries/s
DEFAULT_NPROBE = 8
REFRESH_ATTEMPTS = 3


@dataclass(frozen=True)
class SearchFilter:
    """``label``: the item's label (a description's category); ``where``: metadata key = value pairs (all
    must hold; values compare with the field's canonical text: strings as they are, numbers and booleans as
    JSON writes them)."""

    label: str | None = None
    where: tuple[tuple[str, str], ...] = ()

    @property
    def active(self) -> bool:
        return self.label is not None or bool(self.where)


def parse_where(terms: Sequence[str] | None) -> tuple[tuple[str, str], ...]:
    out = []
    for term in terms or ():
        key, sep, value = term.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"--where {term!r}: expected key=value")
        out.append((key.strip(), value))
    return tuple(out)


@dataclass(frozen=True)
class Hit:
    id: int
    score: float
    label: str | None  # the item's label, or the description's category
    uri: str | None  # items
    text: str | None  # descriptions
    meta: dict[str, Any] | None


class CrossModalSearch:
    """Searches one target of a space: a modality's gallery, or the descriptions (``target="descriptions"``)."""

    def __init__(
        self, db: Database, home: Path, device: Device, space: Space, target: str, *,
        nprobe: int | None = None, ef_search: int | None = None, version: int | None = None,
    ) -> None:
        self.db, self.space, self.target = db, space, target
        self._tuning = (nprobe, ef_search)
        if target == DESCRIPTIONS:
            self._index = description_index(db, space, home, device)
            self.modality_id = None
        else:
            with db.session() as session:
                modality = find_modality(session, space, target)
                _ = modality.space
            self._index = gallery_index(db, home, device, modality)
            self.modality_id = modality.id
        self._load(version)

    def _load(self, version: int | None) -> None:
        """The index as a reader at ``version`` (None: now) searches it: its segments (FAISS files or Milvus
        collections, ``--vectors``) and their tombstones; every read of rows below is made at the same version.
        Replaced whole (one assignment), so a search running in another thread keeps the one it started with."""
        try:
            store = self._index.load(version)
        except VersionGone:  # the vacuum passed that version (its reader lease ran out): the current one
            store = self._index.load(None)
        nprobe, ef_search = self._tuning
        if nprobe is None and store.is_ivf:
            nprobe = DEFAULT_NPROBE
        store.tune(nprobe=nprobe, ef_search=ef_search)
        self._view = store

    @property
    def store(self) -> SegmentSet:
        """The segments this search reads now."""
        return self._view

    @property
    def version(self) -> int:
        """The catalog version this search reads."""
        return self._view.version

    # -- filters ------------------------------------------------------------------------------------
    def _allowed(self, session: Session, f: SearchFilter, view: SegmentSet | None = None) -> np.ndarray:
        version = (view or self._view).version
        if self.target == DESCRIPTIONS:
            stmt = (
                select(Description.id)
                .join(Corpus, Description.corpus_id == Corpus.id)
                .where(Corpus.space_id == self.space.id, corpus_visible(version))
            )
            if f.label is not None:
                stmt = stmt.join(Category, Description.category_id == Category.id).where(Category.name == f.label)
            meta_terms = []
            for key, value in f.where:
                if key == "corpus":
                    stmt = stmt.where(corpus_name() == value)
                else:
                    meta_terms.append((key, value))
            if meta_terms:  # compared in Python, as canonical text, the same on every backend
                rows = session.execute(stmt.add_columns(Description.meta).where(Description.meta.is_not(None)))
                return np.fromiter((i for i, meta in rows if isinstance(meta, dict)
                                    and all(k in meta and canonical(meta[k]) == v for k, v in meta_terms)), dtype=np.int64)
        else:
            stmt = select(Item.id).where(item_visible(self.modality_id, version))  # type: ignore[arg-type]
            if f.label is not None:
                stmt = stmt.where(Item.label == f.label)
            for key, value in f.where:
                if key == "uri":
                    stmt = stmt.where(Item.uri == value)
                    continue
                field = select(ItemField.item_id).where(ItemField.key == key, ItemField.value == value)
                stmt = stmt.where(Item.id.in_(field))
        return np.fromiter(session.scalars(stmt), dtype=np.int64)

    def _require_label(self, session: Session, label: str, version: int) -> None:
        """NotFound, with the closest labels, when nothing this search's version sees has ``label``."""
        if self.target != DESCRIPTIONS:
            require_label(session, session.get(Modality, self.modality_id), label, version)  # type: ignore[arg-type]
            return
        named = (select(Category.name).join(Description, Description.category_id == Category.id)
                 .join(Corpus, Description.corpus_id == Corpus.id)
                 .where(Corpus.space_id == self.space.id, corpus_visible(version)))
        if session.scalar(named.where(Category.name == label).limit(1)) is None:
            raise unknown_label(label, session.scalars(named.distinct().limit(MAX_SUGGESTED_FROM)), "the descriptions")

    def _pushdown(self, session: Session, f: SearchFilter, view: SegmentSet | None = None,
                  k: int = 1) -> tuple[Filter, int] | None:
        """A filter on the Milvus collections' scalar columns equal to ``f`` and how many rows pass it (counted in
        the store), when ``f`` is a label and/or corpus filter, the index is collections and each can answer ``k``
        hits past its tombstones; else None."""
        view = view or self._view
        version = view.version
        if not view.fields or not view.filters_in_place(k):
            return None
        if self.target == DESCRIPTIONS:
            if any(key != "corpus" for key, _ in f.where) or len({v for _, v in f.where}) > 1:
                return None
            stmt = (select(func.count(Description.id)).join(Corpus, Description.corpus_id == Corpus.id)
                    .where(Corpus.space_id == self.space.id, corpus_visible(version)))
            flt = Filter()
            if f.label is not None:
                category = session.scalar(select(Category.id).where(Category.name == f.label))
                stmt = stmt.where(Description.category_id == (category if category is not None else -1))
                flt &= Filter.eq("category", category if category is not None else -1)
            if f.where:
                corpus = session.scalar(select(Corpus.id).where(Corpus.space_id == self.space.id,
                                                                corpus_visible(version),
                                                                corpus_name() == f.where[0][1]))
                stmt = stmt.where(Description.corpus_id == (corpus if corpus is not None else -1))
                flt &= Filter.eq("corpus", corpus if corpus is not None else -1)
        else:
            if f.where or not f.label:  # metadata: by keys; "" is how the column keeps "no label"
                return None
            stmt = select(func.count(Item.id)).where(item_visible(self.modality_id, version),  # type: ignore[arg-type]
                                                     Item.label == f.label)
            flt = Filter.eq("label", f.label)
        return flt, int(session.scalar(stmt) or 0)

    def _vectors(self, session: Session, ids: np.ndarray, view: SegmentSet) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of ``ids`` as the search's version holds them: from the segments when they keep vectors
        exactly (a re-projection since rewrote the rows' own), else from the store."""
        held = view.vectors_of(ids)
        if held is not None:
            return held
        column, key = (Description.vector, Description.id) if self.target == DESCRIPTIONS else (Item.vector, Item.id)
        got_ids, blobs = [], []
        for s in range(0, ids.size, SQL_IN_CHUNK):
            chunk = ids[s : s + SQL_IN_CHUNK]
            for i, b in session.execute(select(key, column).where(id_in(key, chunk, self.db.backend))):
                got_ids.append(i)
                blobs.append(b)
        return np.asarray(got_ids, dtype=np.int64), from_bytes(blobs, self.space.dim)

    # -- search -------------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int = 10, flt: SearchFilter | None = None) -> list[list[Hit]]:
        """[B, d] vectors of the space → the k best hits per query (fewer only when fewer items match), all from
        the catalog version this search was loaded at; when the vacuum has removed rows of that version (a reader
        left behind longer than its lease), it moves to the current version first."""
        for _ in range(REFRESH_ATTEMPTS):
            hits = self._search(queries, k, flt)
            if hits is not None:
                return hits
            log.info("catalog version %d of the %s index was vacuumed: searching the current one", self.version,
                     self.target)
            self._load(None)
        raise Conflict(f"the {self.target} index kept changing under this search; run it again")

    def _search(self, queries: np.ndarray, k: int, flt: SearchFilter | None) -> list[list[Hit]] | None:
        view = self._view  # one version from the first read to the last
        try:
            hits = self._search_in(view, queries, k, flt)
        except Conflict as e:  # a collection the vacuum dropped under a reader that outlived its lease
            if not self._passed(view):
                raise
            log.info("%s", e)
            return None
        return None if hits is None or self._passed(view) else hits

    def _passed(self, view: SegmentSet) -> bool:
        """Whether the vacuum has removed rows that ``view``'s version sees (one primary-key read)."""
        with self.db.session() as session:
            return catalog_state(session)[1] > view.version

    def _search_in(self, view: SegmentSet, queries: np.ndarray, k: int, flt: SearchFilter | None
                   ) -> list[list[Hit]] | None:
        if k < 1:
            raise InvalidInput(f"k must be >= 1, got {k}")
        queries = normalize(queries)  # [B, d]
        if queries.shape[1] != self.space.dim:
            raise InvalidInput(f"queries have {queries.shape[1]} dimensions, the space {self.space.encoder} has {self.space.dim}")
        flt = flt or SearchFilter()
        empty: list[list[Hit]] = [[] for _ in range(len(queries))]
        if view.ntotal == 0:
            return empty
        if not flt.active:
            scores, ids = view.search(queries, min(k, view.ntotal))  # [B, k]
        else:
            with self.db.session() as session:
                pushed = self._pushdown(session, flt, view, k)
                allowed = self._allowed(session, flt, view) if pushed is None else None
                n_match = int(allowed.size) if allowed is not None else pushed[1]  # type: ignore[index]
                if not n_match:
                    if flt.label is not None:  # a label that nothing has is a mistake, not an empty answer
                        self._require_label(session, flt.label, view.version)
                    return empty
                want = min(k, n_match)
                if pushed is not None:  # on the collection's own columns, in Milvus
                    scores, ids = view.search_filtered(queries, want, pushed[0])
                else:
                    scores, ids = view.search_subset(queries, want, allowed)  # [B, want]
                short = np.flatnonzero((ids >= 0).sum(axis=1) < want)
                if short.size:  # an approximate index missed matching items: answer those queries exactly
                    log.debug("%d of %d filtered queries answered exactly", short.size, len(queries))
                    if allowed is None:
                        allowed = self._allowed(session, flt, view)
                    vec_ids, vectors = self._vectors(session, allowed, view)
                    scores[short], ids[short] = exact_knn(queries[short], vec_ids, vectors, want)
        wanted = {int(i) for i in ids.ravel() if i >= 0}
        rows = self._hydrate(wanted)
        if len(rows) < len(wanted):
            return None  # rows this version sees are gone: the vacuum passed it
        return [
            [Hit(int(i), float(s), *rows[int(i)]) for s, i in zip(srow, irow) if int(i) in rows]
            for srow, irow in zip(scores, ids)
        ]

    def _hydrate(self, ids: set[int]) -> dict[int, tuple[Any, ...]]:
        """One query for all hits of the call."""
        if not ids:
            return {}
        with self.db.session() as session:
            if self.target == DESCRIPTIONS:
                stmt = (  # rows of this search's version: a corpus deleted since still shows its name
                    select(Description.id, Category.name, Description.text, Description.meta, corpus_name())
                    .join(Category, Description.category_id == Category.id)
                    .join(Corpus, Description.corpus_id == Corpus.id)
                    .where(id_in(Description.id, ids, self.db.backend))
                )
                return {i: (cat, None, text, {**(meta or {}), "corpus": corpus})
                        for i, cat, text, meta, corpus in session.execute(stmt)}
            stmt = select(Item.id, Item.label, Item.uri, Item.meta).where(id_in(Item.id, ids, self.db.backend))
            return {i: (label, uri, None, meta) for i, label, uri, meta in session.execute(stmt)}
