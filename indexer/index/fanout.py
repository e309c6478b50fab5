"""A search over the segments of one index at one catalog version: each segment is searched for the k best of its
live rows and the hits are merged, best first, ties broken by the smaller id.

For flat segments this is exact: the k best of the union are among the k best of each part, so the merged hits
(ids, scores, order) are those of one flat index holding the same live vectors. A segment's tombstones (rows
deleted since it was written) are left out before its k best are taken: a FAISS segment searches with an ID
selector that excludes them; a Milvus collection over-fetches by their number (or, past its hit limit, searches
among its live keys). Filtered searches take the allowed ids, which the caller computed at the same version.

The segments that share one Milvus collection are searched together, in one Milvus search filtered to their
tokens (a row key is in one segment of a version, so their tombstones can be left out together), as long as their
tombstones stay within DEAD_PER_SEARCH; more tombstones split them into several searches.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from unibind.indexer.index.backend import Filter
from unibind.indexer.index.places import SearchIndex
from unibind.indexer.index.vector_store import VectorStore
from unibind.schema.errors import InvalidInput


@dataclass(frozen=True)
class Part:
    """One segment as a reader sees it: its payload, ready to search, and the ids it must leave out (sorted)."""

    segment_id: int
    store: SearchIndex
    dead: np.ndarray  # [t] int64, tombstoned ids the payload holds
    factory: str  # the type this payload was built as

    @property
    def n_live(self) -> int:
        return int(self.store.ntotal) - int(self.dead.size)

    @cached_property
    def live_ids(self) -> np.ndarray:
        """The ids it holds less its tombstones (read once: a collection reads every key back)."""
        return np.setdiff1d(self.store.ids(), self.dead)

    @cached_property
    def excluded(self) -> Any:
        """A FAISS selector leaving out the tombstoned ids (made once per loaded view, not per query)."""
        return VectorStore.excluding(self.dead)

    @property
    def max_k(self) -> int | None:
        """The most hits one search of this payload may return (a Milvus server's limit), or None."""
        return getattr(getattr(self.store, "backend", None), "max_k", None)

    @property
    def exact_vectors(self) -> bool:
        """Whether the payload keeps its vectors exactly (flat storage: not a PQ or scalar-quantised type)."""
        kind = self.factory.upper()
        return not any(q in kind for q in ("PQ", "SQ", "LSH", "RABITQ"))


def merge_hits(parts: Sequence[tuple[np.ndarray, np.ndarray]], k: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query, the k best of every part's (scores [B, k_i], ids [B, k_i]), best first, ties by the smaller id;
    fewer than k hits are padded with id -1 and score -inf (as FAISS pads)."""
    if not parts:
        return np.full((b, k), -np.inf, dtype=np.float32), np.full((b, k), -1, dtype=np.int64)
    scores = np.concatenate([np.asarray(s, dtype=np.float32) for s, _ in parts], axis=1)  # [B, sum k_i]
    ids = np.concatenate([np.asarray(i, dtype=np.int64) for _, i in parts], axis=1)
    scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
    by_id = np.argsort(np.where(ids < 0, np.iinfo(np.int64).max, ids), axis=1, kind="stable")
    scores, ids = np.take_along_axis(scores, by_id, axis=1), np.take_along_axis(ids, by_id, axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # stable: equal scores keep the id order
    scores, ids = np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)
    if scores.shape[1] < k:
        pad = k - scores.shape[1]
        scores = np.concatenate([scores, np.full((b, pad), -np.inf, np.float32)], axis=1)
        ids = np.concatenate([ids, np.full((b, pad), -1, np.int64)], axis=1)
    ids[~np.isfinite(scores)] = -1
    return scores, ids


class SegmentSet:
    """The searchable view of one index at one catalog version (what readers search: see ``places.SearchIndex``)."""

    def __init__(self, parts: Sequence[Part], dim: int, factory: str, version: int) -> None:
        self.parts = list(parts)
        self._dim = dim
        self.factory = factory  # the index's configured type
        self.version = version

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def ntotal(self) -> int:
        return sum(p.n_live for p in self.parts)

    @property
    def n_segments(self) -> int:
        return len(self.parts)

    @cached_property
    def searched(self) -> list[Part]:
        """What one search visits: each segment with live rows, those of one Milvus collection as one part."""
        out: list[Part] = []
        groups: dict[Any, list[Part]] = {}
        for p in self.parts:
            if p.n_live <= 0:
                continue
            key = getattr(p.store, "group_key", None)
            if key is None:
                out.append(p)
            else:
                groups.setdefault(key, []).append(p)
        for members in groups.values():
            chunks: list[list[Part]] = [[]]
            for m in members:  # one search over-fetches by its tombstones: keep them under a server's hit limit
                if chunks[-1] and sum(int(c.dead.size) for c in chunks[-1]) + int(m.dead.size) > DEAD_PER_SEARCH:
                    chunks.append([])
                chunks[-1].append(m)
            for chunk in chunks:
                if len(chunk) == 1:
                    out.append(chunk[0])
                    continue
                store = type(chunk[0].store).union([m.store for m in chunk])  # type: ignore[attr-defined]
                dead = np.unique(np.concatenate([m.dead for m in chunk]))
                out.append(Part(-1, store, dead, chunk[0].factory))
        return out

    @property
    def is_ivf(self) -> bool:
        return any(p.store.is_ivf for p in self.parts) or _is_ivf_type(self.factory)

    def tune(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """IVF lists probed / HNSW candidates, set on the segments of that type (a segment too small for the index's
        type is flat and takes neither); refused as a single index would refuse it."""
        if nprobe is not None:
            if not self.is_ivf:
                raise InvalidInput(f"--nprobe applies to IVF indexes; this index is {self.factory!r}")
            if nprobe < 1:
                raise InvalidInput(f"nprobe must be >= 1, got {nprobe}")
        if ef_search is not None:
            if "HNSW" not in self.factory.upper():
                raise InvalidInput(f"--ef-search applies to HNSW indexes; this index is {self.factory!r}")
            if ef_search < 1:
                raise InvalidInput(f"ef_search must be >= 1, got {ef_search}")
        for p in self.parts:
            if nprobe is not None and p.store.is_ivf:
                p.store.tune(nprobe=nprobe)
            if ef_search is not None and "HNSW" in p.factory.upper():
                p.store.tune(ef_search=ef_search)

    def ids(self) -> np.ndarray:
        parts = [p.live_ids if p.dead.size else p.store.ids() for p in self.parts]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def vectors_of(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(ids, vectors) of those of ``ids`` the segments hold, as they hold them; None when a segment keeps its
        vectors only approximately (the caller reads the store's)."""
        if not all(p.exact_vectors for p in self.parts):
            return None
        got_ids, got = [], []
        for p in self.parts:
            mine = np.intersect1d(np.asarray(ids, dtype=np.int64), p.live_ids)
            if not mine.size:
                continue
            if isinstance(p.store, VectorStore):
                got_ids.append(mine)
                got.append(p.store.vectors_of(mine))
            else:
                keys, vecs = p.store.vectors(mine)  # type: ignore[attr-defined]
                got_ids.append(keys)
                got.append(vecs)
        if not got:
            return np.empty(0, np.int64), np.empty((0, self._dim), np.float32)
        return np.concatenate(got_ids), np.concatenate(got)

    def filters_in_place(self, k: int) -> bool:
        """Whether every segment can answer a filtered search for ``k`` hits on its own columns: over-fetching past
        its tombstones stays within its hit limit."""
        return all(p.max_k is None or k + p.dead.size <= p.max_k for p in self.searched)

    def _check(self, queries: np.ndarray, k: int) -> np.ndarray:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self._dim:
            raise InvalidInput(f"queries of shape {queries.shape} do not fit an index of dimension {self._dim}")
        if k < 1:
            raise InvalidInput(f"k must be >= 1, got {k}")
        return queries

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """[B, d] unit queries → (scores [B, k], ids [B, k]) over every live row; missing neighbours have id -1.

        Small batches search CPU segments side by side (FAISS answers fewer than 20 queries on one thread per
        index, and releases the GIL); larger ones, and GPU replicas (which share one set of GPU resources), one
        segment after the other."""
        queries = self._check(queries, k)
        parts = self.searched
        on_gpu = any(isinstance(p.store, VectorStore) and p.store.device.faiss_gpu is not None for p in parts)
        if len(parts) > 1 and queries.shape[0] < SIDE_BY_SIDE_BELOW and not on_gpu:
            found = list(_pool().map(lambda p: _part_search(p, queries, k), parts))
        else:
            found = [_part_search(p, queries, k) for p in parts]
        return merge_hits(found, k, queries.shape[0])

    def search_subset(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Like ``search``, among ``allowed`` ids only (computed by the caller at this set's version)."""
        queries = self._check(queries, k)
        allowed = np.asarray(allowed, dtype=np.int64)
        found = []
        for p in self.searched:  # ``allowed`` was read at this set's version: it holds no tombstoned row
            found.append(p.store.search_subset(queries, k, allowed))
        return merge_hits(found, k, queries.shape[0])

    @property
    def fields(self) -> dict[str, str]:
        """The scalar columns every segment's payload carries (Milvus collections; empty for FAISS files)."""
        columns = [getattr(p.store, "fields", None) for p in self.parts]
        if not columns or any(not c for c in columns):
            return {}
        return dict(columns[0])  # type: ignore[arg-type]

    def search_filtered(self, queries: np.ndarray, k: int, filter: Filter) -> tuple[np.ndarray, np.ndarray]:
        """Like ``search``, among the rows whose scalar columns pass ``filter`` (Milvus segments only; see
        ``filters_in_place``)."""
        queries = self._check(queries, k)
        found = []
        for p in self.searched:
            want = k + int(p.dead.size)
            scores, ids = p.store.search_filtered(queries, want, filter)  # type: ignore[attr-defined]
            found.append(_without(scores, ids, p.dead))
        return merge_hits(found, k, queries.shape[0])


DEAD_PER_SEARCH = 8_192  # tombstones one grouped Milvus search over-fetches by at most (compaction's bound per segment)
SIDE_BY_SIDE_BELOW = 20  # FAISS's own threshold: fewer queries are answered on one thread per index
_POOL: list[ThreadPoolExecutor] = []
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """The threads segments are searched on side by side: one per core, made on first use, shared by the process."""
    with _POOL_LOCK:
        if not _POOL:
            _POOL.append(ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="unibind-segments"))
        return _POOL[0]


def _is_ivf_type(factory: str) -> bool:
    return "IVF" in factory.upper()  # FAISS "IVF1024,Flat", "OPQ16,IVF256,PQ16"; Milvus "IVF_FLAT", "IVF_SQ8"


def _without(scores: np.ndarray, ids: np.ndarray, dead: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hits less the ``dead`` ids (their places become -1 / -inf, which the merge puts last)."""
    if not dead.size:
        return scores, ids
    gone = np.isin(ids, dead)
    return np.where(gone, -np.inf, scores), np.where(gone, -1, ids)


def _part_search(p: Part, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best live rows of one segment."""
    kk = min(k, max(p.n_live, 1))
    if not p.dead.size:
        return p.store.search(queries, min(kk, int(p.store.ntotal)))
    if isinstance(p.store, VectorStore):
        return p.store.search_excluding(queries, kk, p.excluded)
    want = kk + int(p.dead.size)  # a collection over-fetches past its dead rows
    if p.max_k is not None and want > p.max_k:
        return p.store.search_subset(queries, kk, p.live_ids)
    scores, ids = p.store.search(queries, min(want, int(p.store.ntotal)))
    return _without(scores, ids, p.dead)


__all__ = ["Part", "SegmentSet", "merge_hits"]
