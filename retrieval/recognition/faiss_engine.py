"""The FAISS recognition engine: a nearest-neighbour search over all centre members (ids = member rows);
a category's first hit is its best member. See retrieval/recognition/engine.py for the two-step design."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

import numpy as np

from unibind.indexer.runtime.device import Device
from unibind.indexer.runtime.faiss_lib import faiss
from unibind.indexer.index.vector_store import VectorStore
from unibind.retrieval.recognition.engine import (
    LOW_PRECISION_NEAR_TIE,
    NEAR_TIE,
    CentreTable,
    RecognitionEngine,
    kth_per_row,
    member_table,
    top_mean,
)

log = logging.getLogger(__name__)


def _kth_category_score(scores: np.ndarray, cats: np.ndarray, k: int) -> np.ndarray:
    """Hits sorted by score per row ([n, f] scores and their categories) → the k-th distinct category's
    best score per row (a category's first hit is its best)."""
    order = np.argsort(cats, axis=1, kind="stable")  # [n, f]
    sorted_cats = np.take_along_axis(cats, order, axis=1)
    first_sorted = np.ones(cats.shape, dtype=bool)
    first_sorted[:, 1:] = sorted_cats[:, 1:] != sorted_cats[:, :-1]
    first = np.empty_like(first_sorted)
    np.put_along_axis(first, order, first_sorted, axis=1)
    distinct = np.cumsum(first, axis=1)  # [n, f] distinct categories up to each hit
    assert (distinct[:, -1] >= k).all(), "fetched too few neighbours for k categories"
    return scores[np.arange(len(scores)), np.argmax(distinct >= k, axis=1)]


class FaissEngine(RecognitionEngine):
    """A FAISS inner-product index over all members (ids = member rows); a category's best hit is its score."""

    name = "faiss"
    SUBSET_CACHE = 2  # label subsets whose sub-index is kept
    FETCH_HINTS = 16  # top_m > 1: (k, index size) pairs whose last search depth is kept

    def __init__(self, table: CentreTable, device: Device, *, top_m: int = 1) -> None:
        super().__init__(table, device, top_m)
        self.tol = LOW_PRECISION_NEAR_TIE if device.faiss_gpu is not None and device.faiss_fp16 else NEAR_TIE
        self.store = self._build(np.arange(table.n_members, dtype=np.int64))
        self.members = None if self.top_m == 1 else member_table(table)  # [C, K_max], for rescoring
        small = np.int16 if table.n_categories <= np.iinfo(np.int16).max else np.int32
        self._owner = None if self.top_m == 1 else table.owner.astype(small)  # [M]: int16 argsorts by radix
        self._grouped = bool((np.diff(table.owner) >= 0).all())  # each category's members are adjacent rows
        self._subsets: OrderedDict[bytes, VectorStore] = OrderedDict()
        self._fetch_hint: dict[tuple[int, int], int] = {}  # top_m > 1: (k, index size) → last search depth
        self._lock = threading.Lock()

    def _build(self, rows: np.ndarray) -> VectorStore:
        store = VectorStore.create(self.table.dim, self.device, "Flat")
        store.add(rows, self.table.vectors[rows])
        return store

    def _subset_store(self, allowed: np.ndarray) -> VectorStore:
        """A flat index over the allowed categories' members (cached). A FAISS IDSelector would also
        work, but it takes FAISS's non-BLAS path and scans every member: slower for batches."""
        key = allowed.tobytes()
        with self._lock:
            if key in self._subsets:
                self._subsets.move_to_end(key)
                return self._subsets[key]
        store = self._build(np.flatnonzero(np.isin(self.table.owner, allowed)))
        with self._lock:
            self._subsets[key] = store
            while len(self._subsets) > self.SUBSET_CACHE:
                self._subsets.popitem(last=False)
        return store

    def _nominate(self, q: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        counts = self.table.counts if allowed is None else self.table.counts[allowed]
        store = self.store if allowed is None else self._subset_store(allowed)
        n_members, k_max = int(counts.sum()), int(counts.max())
        fetch = min(n_members, (k - 1) * k_max + 1)  # pigeonhole: enough hits for k distinct categories
        if self.top_m > 1:
            return self._nominate_top_m(q, k, store, n_members, len(counts), fetch)
        pending = np.arange(q.shape[0])
        out_q, out_m = [], []
        while pending.size:
            scores, ids = store.search(q[pending], fetch)  # [n, fetch], best first
            threshold = _kth_category_score(scores, self.table.owner[ids], k) - self.tol  # [n]
            done = (scores[:, -1] < threshold) | (fetch >= n_members)  # every near-tie member was fetched
            rows, cols = np.nonzero(done[:, None] & (scores >= threshold[:, None]))
            out_q.append(pending[rows])
            out_m.append(ids[rows, cols])
            pending = pending[~done]
            if pending.size:
                log.debug("%d queries have near ties past %d neighbours; fetching more", pending.size, fetch)
                fetch = min(2 * fetch, n_members)
        return np.concatenate(out_q), np.concatenate(out_m)

    def _rescore(self, q: np.ndarray, rows: np.ndarray, cats: np.ndarray) -> tuple[np.ndarray, ...]:
        """Every member of category cats[i] against query q[rows[i]] → (scores [R, K_max] float32, -inf past
        a category's last member; member rows [R, K_max]; mean of the m' best [R]; m'-th best [R])."""
        ids = self.members[cats]  # [R, K_max]
        scores = np.full(ids.shape, -np.inf, dtype=np.float32)
        vectors, counts = self.table.vectors, self.table.counts
        order = np.argsort(cats, kind="stable")
        firsts = np.flatnonzero(np.r_[True, cats[order][1:] != cats[order][:-1]]) if len(cats) else order
        # one small BLAS product per category (single-threaded) beats FAISS's parallel inner products by id
        # from about 2 queries per category and thread on (4 when the members must be gathered)
        if len(cats) >= (2 if self._grouped else 4) * faiss.omp_get_max_threads() * len(firsts):
            x = q[rows[order]]  # [R, d] grouped by category
            for start, end in zip(firsts.tolist(), np.append(firsts[1:], len(cats)).tolist()):
                member = ids[order[start], : counts[cats[order[start]]]]  # the category's member rows
                z = vectors[member[0] : member[-1] + 1] if self._grouped else vectors[member]  # [n_c, d]
                scores[order[start:end], : len(member)] = x[start:end] @ z.T
        elif len(cats):  # FAISS's inner products by id: no copies of the members
            x = np.ascontiguousarray(q[rows])  # [R, d]
            ids = np.ascontiguousarray(ids)
            faiss.fvec_inner_products_by_idx(faiss.swig_ptr(scores), faiss.swig_ptr(x), faiss.swig_ptr(vectors),
                                             faiss.swig_ptr(ids), vectors.shape[1], len(rows), ids.shape[1])
        mean, mth = top_mean(scores, np.minimum(self.top_m, counts[cats]), self.top_m)
        return scores, ids, mean, mth

    def _nominate_top_m(
        self, q: np.ndarray, k: int, store: VectorStore, n_members: int, n_cats: int, fetch: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Nomination for top_m = m > 1 from the nearest members: ``fetch`` of them (pigeonhole), or twice as
        many as the deepest query of the previous call with the same k and index needed; doubled until enough.

        Per query, the fetched hits of a category are its best members (approximately); with m' =
        min(m, |C|): a category with >= m' hits has a known S_m; one with j < m' hits has S_m <=
        (its hits + (m' - j) s_last) / m', an unseen one S_m <= s_last (s_last: the last fetched score).
        The k-th best known S_m is a lower bound of the k-th best S_m; partly seen categories whose bound
        reaches it - tol are rescored (all their members; the k with the largest bounds first, which
        raises the lower bound for the rest), and ``kth`` = the k-th best of the known and rescored S_m.
        The query is done when no unseen category can reach ``kth - tol`` (s_last < kth - tol, or none is
        unseen): its candidates are the categories with S_m >= kth - tol, and each nominates its members
        >= its m'-th best - tol, from the hits when no unfetched member can be that close (s_last < m'-th -
        tol, or all its members were fetched), else from a rescoring.

        How deep the search must go depends on the data (S_m sits lower than the maxima, so unseen
        categories must be ruled out further down); re-searching for a few queries costs a whole scan of
        the index, so twice the depth the last call needed (same k and index) is where the next one starts.
        That changes only the speed, never the answer."""
        m, tol = self.top_m, self.tol
        counts = self.table.counts
        hint_key = (k, n_members)
        pigeonhole, deepest = fetch, 0  # deepest: the most hits any query needed (its hits >= kth - tol, + 1)
        fetch = min(n_members, max(fetch, self._fetch_hint.get(hint_key, 0)))
        pending = np.arange(q.shape[0])
        out_q, out_m = [], []
        while pending.size:
            qp = q[pending]
            scores, ids = store.search(qp, fetch)  # [n, fetch], best first
            n, f = scores.shape
            cats = self._owner[ids]  # [n, f]
            order = np.argsort(cats, axis=1, kind="stable")  # per row: hits by category, best first in each
            flat = (order + (np.arange(n) * f)[:, None]).ravel()  # [n*f] hits grouped by (row, category)
            hit_cat, hit_score, hit_id = cats.ravel()[flat], scores.ravel()[flat], ids.ravel()[flat]
            first = np.ones(n * f, dtype=bool)
            first[1:] = hit_cat[1:] != hit_cat[:-1]
            first[::f] = True
            starts = np.flatnonzero(first)  # [G] first hit of each (row, category) group
            group = np.cumsum(first) - 1  # [n*f] group of each hit
            row, cat = starts // f, hit_cat[starts].astype(np.int64)  # [G], rows sorted
            pos = np.arange(len(starts)) - group[row * f]  # [G] group's position in its row
            hits = np.diff(np.append(starts, n * f))  # [G]
            m_eff = np.minimum(m, counts[cat])  # [G]
            in_top = np.arange(n * f) - starts[group] < m_eff[group]
            total = np.bincount(group, weights=np.where(in_top, hit_score, 0.0), minlength=len(starts))
            s_last = scores[:, -1].astype(np.float64)  # [n]
            known = hits >= m_eff
            bound = (total + np.maximum(m_eff - hits, 0) * s_last[row]) / m_eff  # S_m if known, else a bound
            score = np.where(known, bound, -np.inf)  # [G] S_m where known (so far)
            low = kth_per_row(row, pos, score, k, n)  # [n]
            reach = ~known & (bound >= low[row] - tol)  # partly seen groups that may reach the k-th best
            top_bounds = kth_per_row(row, pos, np.where(reach, bound, -np.inf), k, n)  # [n]
            rescored = []
            for resc in (np.flatnonzero(reach & (bound >= top_bounds[row])), None):
                if resc is None:  # second round: the rest that can still reach the raised lower bound
                    low = kth_per_row(row, pos, score, k, n)
                    resc = np.flatnonzero(reach & (score == -np.inf) & (bound >= low[row] - tol))
                r_scores, r_ids, r_mean, r_mth = self._rescore(qp, row[resc], cat[resc])
                score[resc] = r_mean
                rescored.append((resc, r_scores, r_ids, r_mth))
            kth = kth_per_row(row, pos, score, k, n)  # [n] finite: the first fetch spans k categories
            seen = np.bincount(row, minlength=n)
            done = (s_last < kth - tol) | (seen >= n_cats) | (fetch >= n_members)
            cand = done[row] & (score >= kth[row] - tol)  # [G]
            deepest = max(deepest, int((scores[done] >= (kth[done] - tol)[:, None]).sum(axis=1).max(initial=0)) + 1)
            mth = hit_score[starts + np.minimum(m_eff, hits) - 1].astype(np.float64)  # [G] m'-th hit if known
            complete = known & ((hits == counts[cat]) | (s_last[row] < mth - tol))
            from_hits = (cand & complete)[group] & (hit_score >= mth[group] - tol)  # [n*f]
            out_q.append(pending[row[group[from_hits]]])
            out_m.append(hit_id[from_hits])
            again = np.flatnonzero(cand & known & ~complete)
            a_scores, a_ids, _, a_mth = self._rescore(qp, row[again], cat[again])
            rescored.append((again, a_scores, a_ids, a_mth))
            for groups, r_scores, r_ids, r_mth in rescored:
                keep = cand[groups]
                r, j = np.nonzero(r_scores[keep] >= (r_mth[keep] - tol)[:, None])  # members near the m'-th
                out_q.append(pending[row[groups[keep][r]]])
                out_m.append(r_ids[keep][r, j])
            pending = pending[~done]
            if pending.size:
                log.debug("%d queries have near ties past %d neighbours; fetching more", pending.size, fetch)
                fetch = min(2 * fetch, n_members)
        with self._lock:
            self._fetch_hint.pop(hint_key, None)
            self._fetch_hint[hint_key] = max(pigeonhole, 2 * deepest)
            while len(self._fetch_hint) > self.FETCH_HINTS:
                self._fetch_hint.pop(next(iter(self._fetch_hint)))
        return np.concatenate(out_q), np.concatenate(out_m)
