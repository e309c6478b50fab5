"""Recognition as retrieval: score every category by its best centre member and keep the top k.

``S(q, C) = max_j cos(q, z_C^j)`` over the members of C's centre (DESIGN.md §1.4). Two engines answer
behind one interface, in two steps, so that they return identical results (labels, order and
bitwise-equal scores):

1. *nominate* (per engine, float32, fast): from approximate scores, find each query's k-th best
   approximate category score T and nominate every centre member whose approximate score is
   >= T - tol. FAISS gets there with a nearest-neighbour search over all members; the dense engine
   with one matrix product per chunk and a max over each category's members.
2. *score exactly* (shared, :func:`exact_top_k`): each nominated (query, member) pair gets a float64
   dot product of the float32 vectors, computed row by row so its value never depends on which other
   pairs came along; a category's score is the max over its nominated members; candidates are sorted
   by (-score, name) and the first k kept.

Why nominating members (not whole categories) is exact: when every approximate score is within
eps <= tol / 2 of the exact one, a true top-k category has exact score >= T - eps, so its best member
has approximate score >= T - 2 eps >= T - tol and is nominated; its exact score is then the true one,
and any other category's partial score can only be lower. The candidate categories are exactly those
whose approximate score is >= T - tol; scoring only their near-best members keeps step 2 cheap.
"""

from __future__ import annotations

import difflib
import logging
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from indexer.device import Device
from indexer.vector_store import VectorStore
from indexer.vectors import normalize

log = logging.getLogger(__name__)

NEAR_TIE = 1e-4  # float32 scores of unit vectors are within ~1e-6 of exact: candidates within this of the k-th
LOW_PRECISION_NEAR_TIE = 4e-3  # FAISS fp16 storage or TF32 matmuls: errors up to ~1e-3
UNIT_TOLERANCE = 1e-3  # |norm - 1| allowed for a centre member
EXACT_CHUNK = 8192  # (query, member) pairs scored per float64 slice
GPU_MAX_K = 2048  # FAISS GPU searches return at most this many neighbours
DEFAULT_MEMORY_BUDGET = 512 << 20  # bytes of temporaries per dense chunk


@dataclass(frozen=True, eq=False)
class CentreTable:
    """All centre members of the categories that can be recognised."""

    names: list[str]  # category names, index = category position c
    vectors: np.ndarray = field(repr=False)  # [M, d] float32 unit rows: every member of every category
    owner: np.ndarray = field(repr=False)  # [M] int64: category position of each member
    counts: np.ndarray = field(init=False, repr=False)  # [C] members per category
    name_rank: np.ndarray = field(init=False, repr=False)  # [C] position of each name in sorted order
    _position: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        names = list(self.names)
        if not names:
            raise ValueError("a centre table needs at least one category")
        position: dict[str, int] = {}
        for i, name in enumerate(names):
            if not isinstance(name, str) or not name:
                raise ValueError(f"category {i}: name must be a non-empty string, got {name!r}")
            if name in position:
                raise ValueError(f"category name {name!r} appears twice (positions {position[name]} and {i})")
            position[name] = i
        vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] < 1:
            raise ValueError(f"centre vectors must be [M, d] with d >= 1, got shape {vectors.shape}")
        norms = np.linalg.norm(vectors, axis=1)  # [M]
        bad = np.flatnonzero(~(np.abs(norms - 1.0) <= UNIT_TOLERANCE))
        if bad.size:
            raise ValueError(
                f"centre member {bad[0]} has norm {norms[bad[0]]:.6g}: members must be L2-normalised "
                "(indexer.vectors.normalize)"
            )
        owner = np.asarray(self.owner)
        if owner.shape != (vectors.shape[0],) or (owner.size and not np.issubdtype(owner.dtype, np.integer)):
            raise ValueError(f"owner must be [M] = [{vectors.shape[0]}] integers, got {owner.dtype} {owner.shape}")
        owner = np.ascontiguousarray(owner, dtype=np.int64)
        out = np.flatnonzero((owner < 0) | (owner >= len(names)))
        if out.size:
            raise ValueError(f"member {out[0]}: owner {owner[out[0]]} is not a category position 0..{len(names) - 1}")
        counts = np.bincount(owner, minlength=len(names))
        if (counts == 0).any():
            raise ValueError(f"category {names[int(np.argmin(counts))]!r} has no centre members")
        rank = np.empty(len(names), dtype=np.int64)
        rank[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
        for key, value in [("names", names), ("vectors", vectors), ("owner", owner), ("counts", counts),
                           ("name_rank", rank), ("_position", position)]:
            object.__setattr__(self, key, value)

    @classmethod
    def from_groups(cls, groups: dict[str, np.ndarray]) -> CentreTable:
        """Build from ``{category name: [n_c, d] unit members}`` (insertion order = category position)."""
        if not groups:
            raise ValueError("a centre table needs at least one category")
        blocks = [np.atleast_2d(np.asarray(v, dtype=np.float32)) for v in groups.values()]  # [n_c, d] each
        owner = np.concatenate([np.full(len(b), c, dtype=np.int64) for c, b in enumerate(blocks)])
        return cls(list(groups), np.concatenate(blocks), owner)

    @property
    def n_categories(self) -> int:
        return len(self.names)

    @property
    def n_members(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def k_max(self) -> int:
        """The most members any category has."""
        return int(self.counts.max())

    def positions(self, labels: Sequence[str]) -> np.ndarray:
        """Sorted unique category positions of ``labels``; unknown names fail with a suggestion."""
        if isinstance(labels, str):
            raise ValueError(f"labels must be a list of category names, not the string {labels!r}")
        labels = list(labels)
        if not labels:
            raise ValueError("labels is empty: give at least one category name, or None for all categories")
        found = []
        for label in labels:
            pos = self._position.get(label) if isinstance(label, str) else None
            if pos is None:
                close = difflib.get_close_matches(str(label), self.names, n=3)
                hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
                raise ValueError(f"unknown label {label!r}{hint}")
            found.append(pos)
        return np.unique(np.asarray(found, dtype=np.int64))


@dataclass(frozen=True)
class Recognition:
    labels: list[str]  # top-k category names, best first
    scores: list[float]  # their scores S(q, C)


def exact_top_k(table: CentreTable, queries: np.ndarray, qi: np.ndarray, mi: np.ndarray, k: int) -> list[Recognition]:
    """The shared exact step: float64 scores of nominated (query, member) pairs, max per category,
    sort by (-score, name), keep k per query. ``queries`` [B, d] are the normalised float32 queries."""
    B, M = queries.shape[0], table.n_members
    pairs = np.unique(qi.astype(np.int64) * M + mi)  # dedupe; sorted by query, then member
    qi, mi = pairs // M, pairs % M
    exact = np.empty(len(pairs), dtype=np.float64)
    for s in range(0, len(pairs), EXACT_CHUNK):
        # [P, d] products of float32 values, exact in float64; each row is summed on its own (numpy's
        # pairwise sum along a contiguous row), so a pair's score never depends on the other pairs
        chunk = slice(s, s + EXACT_CHUNK)
        products = np.multiply(queries[qi[chunk]], table.vectors[mi[chunk]], dtype=np.float64)
        exact[chunk] = products.sum(axis=1)
    cat = table.owner[mi]
    order = np.lexsort((-exact, cat, qi))  # best member first within each (query, category)
    qi, cat, exact = qi[order], cat[order], exact[order]
    first = np.ones(len(qi), dtype=bool)
    first[1:] = (qi[1:] != qi[:-1]) | (cat[1:] != cat[:-1])
    qi, cat, exact = qi[first], cat[first], exact[first]
    order = np.lexsort((table.name_rank[cat], -exact, qi))  # per query: best score first, ties by name
    qi, cat, exact = qi[order], cat[order], exact[order]
    keep = np.arange(len(qi)) - np.searchsorted(qi, qi, side="left") < k
    qi, cat, exact = qi[keep], cat[keep], exact[keep]
    bounds = np.searchsorted(qi, np.arange(B + 1), side="left")
    names, scores = table.names, exact.tolist()
    return [
        Recognition([names[c] for c in cat[bounds[b] : bounds[b + 1]].tolist()], scores[bounds[b] : bounds[b + 1]])
        for b in range(B)
    ]


class RecognitionEngine(ABC):
    """Answers ``recognize`` over one CentreTable; subclasses only nominate candidate members."""

    name = "engine"

    def __init__(self, table: CentreTable, device: Device) -> None:
        self.table = table
        self.device = device

    def recognize(self, queries: np.ndarray, k: int = 5, labels: Sequence[str] | None = None) -> list[Recognition]:
        """Top-k categories of each query ([B, d], or [d] for one), restricted to ``labels`` if given."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        q = np.asarray(queries)
        if q.ndim not in (1, 2) or q.shape[-1] != self.table.dim:
            raise ValueError(f"queries of shape {q.shape} do not fit centres of dimension {self.table.dim}: "
                             f"expected [B, {self.table.dim}] or [{self.table.dim}]")
        q = normalize(q)  # [B, d] float32, unit rows: the one place queries are normalised
        allowed = None if labels is None else self.table.positions(labels)
        if allowed is not None and len(allowed) == self.table.n_categories:
            allowed = None
        n_allowed = self.table.n_categories if allowed is None else len(allowed)
        if q.shape[0] == 0:
            return []
        kk = min(int(k), n_allowed)
        qi, mi = self._nominate(q, kk, allowed)
        return exact_top_k(self.table, q, qi, mi, kk)

    @abstractmethod
    def _nominate(self, q: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(query rows, member rows) of every member whose approximate score is >= the query's approximate
        k-th best category score - tolerance, among the ``allowed`` categories (None: all)."""


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

    def __init__(self, table: CentreTable, device: Device) -> None:
        super().__init__(table, device)
        self.tol = LOW_PRECISION_NEAR_TIE if device.faiss_gpu is not None and device.faiss_fp16 else NEAR_TIE
        self.store = self._build(np.arange(table.n_members, dtype=np.int64))
        self._subsets: OrderedDict[bytes, VectorStore] = OrderedDict()
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

    def _search(self, store: VectorStore, q: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self.device.faiss_gpu is not None and n > GPU_MAX_K:
            return store.index.search(q, n)  # more neighbours than a GPU search returns: the CPU index
        return store.search(q, n)

    def _nominate(self, q: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        counts = self.table.counts if allowed is None else self.table.counts[allowed]
        store = self.store if allowed is None else self._subset_store(allowed)
        n_members, k_max = int(counts.sum()), int(counts.max())
        fetch = min(n_members, (k - 1) * k_max + 1)  # pigeonhole: enough hits for k distinct categories
        pending = np.arange(q.shape[0])
        out_q, out_m = [], []
        while pending.size:
            scores, ids = self._search(store, q[pending], fetch)  # [n, fetch], best first
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


class DenseEngine(RecognitionEngine):
    """Torch: members padded to K_max per category; ``[B, d] x [K, C, d] -> max over K -> top over C``.

    The padded members are stored slot-major, [K, C, d]: the max over K is then an elementwise max of
    K contiguous [B, C] slices (about twice as fast as reducing K inner values per category). Padding
    repeats a category's first member, which leaves the max unchanged, so no -inf mask pass is needed.
    Queries (and, for large label subsets, categories) go in chunks so temporaries stay under
    ``memory_budget`` bytes."""

    name = "dense"

    def __init__(self, table: CentreTable, device: Device, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> None:
        super().__init__(table, device)
        self.budget = int(memory_budget)
        C, K = table.n_categories, table.k_max
        order = np.argsort(table.owner, kind="stable")  # member rows grouped by category
        starts = np.concatenate([[0], np.cumsum(table.counts)[:-1]])
        slots = np.repeat(order[starts][None, :], K, axis=0)  # [K, C] member row per slot; padding = first member
        slots[np.arange(table.n_members) - starts[table.owner[order]], table.owner[order]] = order
        self.slots = slots
        padded = torch.from_numpy(table.vectors[slots.ravel()])  # [K*C, d], slot-major
        self.members = padded.to(device.torch).view(K, C, table.dim)  # [K, C, d]

    def _tolerance(self) -> float:
        tf32 = self.device.is_cuda and torch.backends.cuda.matmul.allow_tf32
        return LOW_PRECISION_NEAR_TIE if tf32 else NEAR_TIE

    def _nominate(self, q: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        dev, tol = self.device.torch, self._tolerance()
        B, d = q.shape
        K = self.table.k_max if allowed is None else int(self.table.counts[allowed].max())
        slots = self.slots if allowed is None else self.slots[:K, allowed]  # [K, Ca]
        Ca = slots.shape[1]
        cats = None if allowed is None else torch.from_numpy(allowed).to(dev)
        c_step = max(1, self.budget // (4 * K))  # scores [1, K, c] fit the budget
        if cats is not None:
            c_step = min(c_step, max(1, self.budget // (4 * K * d)))  # so does a gathered [K, c, d] block
        qt = torch.from_numpy(q).to(dev)  # [B, d]

        def block(c0: int, c1: int) -> torch.Tensor:  # [K, c, d] members of allowed categories c0..c1
            if cats is None:
                return self.members if (c0, c1) == (0, Ca) else self.members[:, c0:c1]
            return self.members[:K].index_select(1, cats[c0:c1])

        def pick(
            bi: torch.Tensor, ci: torch.Tensor, member: torch.Tensor, threshold: torch.Tensor
        ) -> tuple[np.ndarray, np.ndarray]:  # nominated (query rows, member rows)
            p, j = torch.nonzero(member >= threshold[:, None], as_tuple=True)  # member: [P, K] approx scores
            return bi[p].cpu().numpy(), slots[j.cpu().numpy(), ci[p].cpu().numpy()]

        out_q, out_m = [], []
        if Ca <= c_step:  # one category block: a query chunk's scores stay whole, members are picked from them
            z = block(0, Ca).reshape(K * Ca, d)  # [K*Ca, d]
            b_step = max(1, self.budget // (4 * K * Ca))
            buf = torch.empty((min(B, b_step), K * Ca), dtype=torch.float32, device=dev)
            for b0 in range(0, B, b_step):
                n = min(b_step, B - b0)
                scores = torch.mm(qt[b0 : b0 + n], z.T, out=buf[:n]).view(n, K, Ca)  # [n, K, Ca]
                best = scores.amax(dim=1)  # [n, Ca]
                threshold = torch.topk(best, k, dim=1).values[:, -1] - tol  # [n]
                bi, ci = torch.nonzero(best >= threshold[:, None], as_tuple=True)  # candidate categories
                qrows, mrows = pick(bi, ci, scores[bi, :, ci], threshold[bi])
                out_q.append(qrows + b0)
                out_m.append(mrows)
            return np.concatenate(out_q), np.concatenate(out_m)

        # several category blocks: pass 1 keeps only category maxima, pass 2 rescores candidates' members
        best = torch.empty((B, Ca), dtype=torch.float32, device=dev)  # [B, Ca]
        b_step = max(1, self.budget // (4 * K * c_step))
        buf = torch.empty(min(B, b_step) * K * c_step, dtype=torch.float32, device=dev)
        for c0 in range(0, Ca, c_step):
            c1 = min(Ca, c0 + c_step)
            z = block(c0, c1).reshape(K * (c1 - c0), d)  # [K*c, d]
            for b0 in range(0, B, b_step):
                n = min(b_step, B - b0)
                scores = torch.mm(qt[b0 : b0 + n], z.T, out=buf[: n * K * (c1 - c0)].view(n, K * (c1 - c0)))
                best[b0 : b0 + n, c0:c1] = scores.view(n, K, c1 - c0).amax(dim=1)
        threshold = torch.topk(best, k, dim=1).values[:, -1] - tol  # [B]
        bi, ci = torch.nonzero(best >= threshold[:, None], as_tuple=True)
        p_step = max(1, self.budget // (4 * K * d))
        for p0 in range(0, len(bi), p_step):
            b, c = bi[p0 : p0 + p_step], ci[p0 : p0 + p_step]
            z = self.members[:K].index_select(1, c if cats is None else cats[c])  # [K, P, d]
            member = torch.einsum("kpd,pd->pk", z, qt[b])  # [P, K]
            qrows, mrows = pick(b, c, member, threshold[b])
            out_q.append(qrows)
            out_m.append(mrows)
        return np.concatenate(out_q), np.concatenate(out_m)


ENGINES: dict[str, type[RecognitionEngine]] = {"faiss": FaissEngine, "dense": DenseEngine}


def make_engine(name: str, table: CentreTable, device: Device) -> RecognitionEngine:
    """Build the recognition engine called ``name`` ("faiss" or "dense") over ``table``."""
    try:
        cls = ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown recognition engine {name!r}; choose from {', '.join(sorted(ENGINES))}") from None
    return cls(table, device)
