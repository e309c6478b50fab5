"""Recognition as retrieval: score every category by its best centre members and keep the top k.

``S_m(q, C)`` = the mean of the min(m, |C|) largest cosines between q and the members of C's centre;
``top_m`` = m = 1 is the paper's ``S(q, C) = max_j cos(q, z_C^j)`` (UniBind's recognition rule), the default of the
engines; the recognizer's default is m = 3 in the space centred on the centre members' mean direction
(``CentreTable.centred``: members and queries minus mu, renormalised), which the engines see as just another
table of unit members and unit queries. Two engines answer behind one interface, in two steps, so that they return identical results
(labels, order and bitwise-equal scores):

1. *nominate* (per engine, float32, fast): from approximate scores, find each query's k-th best
   approximate category score T, and for every category whose approximate score is >= T - tol
   nominate each member whose approximate score is >= (the category's approximate m-th best member
   score) - tol (for m = 1: >= T - tol, which holds for the category's best member). FAISS gets
   there with a nearest-neighbour search over all members; the dense engine with one matrix product
   per chunk and a max over each category's members.
2. *score exactly* (shared, :func:`score_nominated`): each nominated (query, member) pair gets a float64
   dot product of the float32 vectors, computed row by row so its value never depends on which other
   pairs came along; a category's score is the mean of its min(m, |C|) best nominated members, summed
   best first; candidates are sorted by (-score, name) and the first k kept.

Why nominating members (not whole categories) is exact: when every approximate member score is within
eps <= tol / 2 of the exact one, so is every order statistic of a category's member scores, hence its
mean of the best m: a true top-k category has exact score >= T - eps, so its approximate score is
>= T - 2 eps >= T - tol and it is a candidate; each of its m best exact members has approximate score
>= (approximate m-th best) - 2 eps, so is nominated, and its exact score is the true one. Every other
nominated category is complete in the same way, so no score in step 2 is wrong. Scoring only the
candidates' near-best members keeps step 2 cheap.

For m > 1 neither engine computes every category's S_m: S_m(C) <= max(C), so both first take each
query's category maxima (the FAISS neighbours' first hit per category; the dense engine's max over K),
get a lower bound L of T from k categories, and score the members of only the categories whose max is
>= L - tol (FAISS: whose bound from its fetched neighbours is; see :meth:`FaissEngine._nominate_top_m`).
"""

from __future__ import annotations

import difflib
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from unibind.indexer.runtime.device import Device
from unibind.indexer.runtime.vectors import normalize
from unibind.schema.errors import InvalidInput, NotFound
log = logging.getLogger(__name__)

# "auto": the dense engine for batches below AUTO_DENSE_BELOW queries, FAISS from there on (both exact and identical).
# On 2 CPU cores with the default rule (a one-off run over B = 1..32, C = 1,000 and 21,000, d = 384, 2026-12-01),
# dense answered 1-16 queries in 0.28-0.77 x FAISS's time and 32 in 0.83-0.89 x,
# while FAISS answers batches of 64 and 1,024 within 1.5 x the bare product where dense needs up to 1.9 x
# (BENCHMARKS.md "recognize"; docs/recognition.md "Engines").
DEFAULT_ENGINE = "auto"
ENGINE_CHOICES = ("auto", "faiss", "dense")
AUTO_DENSE_BELOW = 32
# the dense engine pads every category to K_max members: "auto" keeps to FAISS when that padded copy is more than this
# many times the members themselves (one category with thousands of descriptions would multiply the memory)
DENSE_MAX_PADDING = 2.0
# A category scores the mean of its 3 best centre members (top_m = 1 is the paper's max). On the dev benchmark
# (bench/centre_study.py) the mean of the few best beat the max for single-sentence queries (m = 2, 3) and for
# multi-fact queries (m = 3, 5); 3 is the choice that is near the best on both. See docs/method.md.
DEFAULT_TOP_M = 3
# Centring: members and queries are scored in the space re-centred on the centre members' mean direction (the mean
# of the category means; for the default strategy, every non-template description of the knowledge base), which
# every description shares and which rewards generic sentences ("There are several ways to identify a ...");
# on the dev benchmark it adds 1.3-1.6 points top-1 to the max and 0.8-1.3 to the mean of the 3 best, for both
# query styles (BENCHMARKS.md "centre rule study").
DEFAULT_CENTRING = True
CENTRING_MIN_NORM = 1e-3  # a member this close to the mean has no direction left: the table is not centred
NEAR_TIE = 1e-4  # float32 scores of unit vectors are within ~1e-6 of exact: candidates within this of the k-th
LOW_PRECISION_NEAR_TIE = 4e-3  # FAISS fp16 storage or TF32 matmuls: errors up to ~1e-3
UNIT_TOLERANCE = 1e-3  # |norm - 1| allowed for a centre member
EXACT_CHUNK = 1024  # (query, member) pairs per float64 slice: ~3 MB at d = 384 stays in cache (8192: 2x slower)


@dataclass(frozen=True, eq=False)
class CentreTable:
    """All centre members of the categories that can be recognised."""

    names: list[str]  # category names, index = category position c
    vectors: np.ndarray = field(repr=False)  # [M, d] float32 unit rows: every member of every category
    owner: np.ndarray = field(repr=False)  # [M] int64: category position of each member
    # the centre members' mean direction [d] the members were centred on (see ``centred``), subtracted from
    # every query before scoring; None: raw cosines
    mean: np.ndarray | None = field(default=None, repr=False)
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
                "(unibind.indexer.runtime.vectors.normalize)"
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
        mean = self.mean
        if mean is not None:
            mean = np.asarray(mean, dtype=np.float64)  # queries are centred on the point the members were
            if mean.shape != (vectors.shape[1],) or not np.isfinite(mean).all():
                raise ValueError(f"mean must be a finite [{vectors.shape[1]}] vector, got shape {mean.shape}")
        for key, value in [("names", names), ("vectors", vectors), ("owner", owner), ("counts", counts),
                           ("name_rank", rank), ("_position", position), ("mean", mean)]:
            object.__setattr__(self, key, value)

    def centred(self) -> CentreTable:
        """This table re-centred on its members' mean direction: mu = the mean of the category means of
        the (unit) members, each member becomes normalize(z - mu) and each query will be normalize(q - mu). Returns
        ``self`` (uncentred, with a log line) when there is nothing to centre on: one category, or a member
        within CENTRING_MIN_NORM of mu."""
        if self.mean is not None:
            return self
        if self.n_categories < 2:
            log.info("one category: recognition scores raw cosines (centring needs at least two)")
            return self
        sums = np.zeros((self.n_categories, self.dim), dtype=np.float64)
        np.add.at(sums, self.owner, self.vectors.astype(np.float64))
        mu = (sums / self.counts[:, None]).mean(axis=0)  # [d] the mean of the category means
        shifted = self.vectors.astype(np.float64) - mu  # [M, d]
        norms = np.linalg.norm(shifted, axis=1)
        if (norms < CENTRING_MIN_NORM).any():
            bad = int(np.argmin(norms))
            log.info("member %d of %r is the centre members' mean direction: recognition scores raw cosines",
                     bad, self.names[int(self.owner[bad])])
            return self
        return CentreTable(list(self.names), (shifted / norms[:, None]).astype(np.float32), self.owner, mu)

    def prepare(self, queries: np.ndarray) -> np.ndarray:
        """[B, d] queries as the engines score them: unit rows, centred like the members when the table is (a query
        that is the mean direction itself, with nothing left after centring, keeps its raw direction)."""
        q = normalize(queries)  # [B, d] float32 unit rows: the one place queries are normalised
        if self.mean is None or q.shape[0] == 0:
            return q
        shifted = q.astype(np.float64) - self.mean  # [B, d]
        norms = np.linalg.norm(shifted, axis=1, keepdims=True)
        empty = norms[:, 0] < CENTRING_MIN_NORM
        if empty.any():
            shifted[empty], norms[empty] = q[empty], 1.0
        return np.ascontiguousarray(shifted / norms, dtype=np.float32)

    @classmethod
    def from_groups(cls, groups: dict[str, np.ndarray]) -> CentreTable:
        """Build from ``{category name: [n_c, d] unit members}`` (insertion order = category position)."""
        if not groups:
            raise ValueError("a centre table needs at least one category")
        blocks = [np.atleast_2d(np.asarray(v, dtype=np.float32)) for v in groups.values()]  # [n_c, d] each
        owner = np.concatenate([np.full(len(b), c, dtype=np.int64) for c, b in enumerate(blocks)])
        return cls(list(groups), np.concatenate(blocks), owner)  # raw cosines; .centred() for the default rule

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
            raise InvalidInput(f"labels must be a list of category names, not the string {labels!r}")
        labels = list(labels)
        if not labels:
            raise InvalidInput("labels is empty: give at least one category name, or None for all categories")
        found = []
        for label in labels:
            pos = self._position.get(label) if isinstance(label, str) else None
            if pos is None:
                close = difflib.get_close_matches(str(label), self.names, n=3)
                hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
                raise NotFound(f"unknown label {label!r}{hint}")
            found.append(pos)
        return np.unique(np.asarray(found, dtype=np.int64))


@dataclass(frozen=True)
class Recognition:
    labels: list[str]  # top-k category names, best first
    scores: list[float]  # their scores S_m(q, C)


def check_top_m(top_m: object) -> int:
    """``top_m`` validated: an integer >= 1 (1 = the paper's max)."""
    if isinstance(top_m, bool) or not isinstance(top_m, (int, np.integer)) or top_m < 1:
        raise InvalidInput(f"top_m must be an integer >= 1 (1 = the paper's max), got {top_m!r}")
    return int(top_m)


def score_nominated(
    table: CentreTable, queries: np.ndarray, qi: np.ndarray, mi: np.ndarray, k: int, top_m: int = 1
) -> list[Recognition]:
    """The shared exact step: float64 scores of nominated (query, member) pairs, per category the mean of
    its min(top_m, |C|) best (for top_m = 1: the max), sort by (-score, name), keep k per query.
    ``queries`` [B, d] are the normalised float32 queries; every nominated category must come with at
    least its min(top_m, |C|) best members (the engines' contract)."""
    top_m = check_top_m(top_m)
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
    starts = np.flatnonzero(first)  # [G] first (best) pair of each (query, category) group
    qi, cat = qi[starts], cat[starts]
    if top_m == 1:
        exact = exact[starts]
    else:
        # mean of the group's m' = min(m, |C|) best, summed best first, one rank at a time: the sum
        # depends only on the group's own values, whatever else was nominated
        m_eff = np.minimum(top_m, table.counts[cat])  # [G]
        sizes = np.diff(np.append(starts, len(order)))  # [G]
        assert (sizes >= m_eff).all(), "a nominated category lacks some of its best members"
        total = exact[starts].copy()
        for r in range(1, int(m_eff.max(initial=1))):
            more = np.flatnonzero(m_eff > r)
            total[more] += exact[starts[more] + r]
        exact = total / m_eff
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
    """Answers ``recognize`` over one CentreTable, scoring a category by the mean of its ``top_m`` best
    members (1: the max); subclasses only nominate candidate members."""

    name = "engine"

    def __init__(self, table: CentreTable, device: Device, top_m: int = 1) -> None:
        self.table = table
        self.device = device
        self.top_m = check_top_m(top_m)

    def recognize(self, queries: np.ndarray, k: int = 5, labels: Sequence[str] | None = None) -> list[Recognition]:
        """Top-k categories of each query ([B, d], or [d] for one), restricted to ``labels`` if given."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidInput(f"k must be an integer >= 1, got {k!r}")
        q = np.asarray(queries)
        if q.ndim not in (1, 2) or q.shape[-1] != self.table.dim:
            raise InvalidInput(f"queries of shape {q.shape} do not fit centres of dimension {self.table.dim}: "
                               f"expected [B, {self.table.dim}] or [{self.table.dim}]")
        q = self.table.prepare(q)  # [B, d] float32 unit rows (centred when the table is)
        allowed = None if labels is None else self.table.positions(labels)
        if allowed is not None and len(allowed) == self.table.n_categories:
            allowed = None
        n_allowed = self.table.n_categories if allowed is None else len(allowed)
        if q.shape[0] == 0:
            return []
        kk = min(int(k), n_allowed)
        qi, mi = self._nominate(q, kk, allowed)
        return score_nominated(self.table, q, qi, mi, kk, self.top_m)

    @abstractmethod
    def _nominate(self, q: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(query rows, member rows), among the ``allowed`` categories (None: all): for top_m = 1, every
        member whose approximate score is >= the query's approximate k-th best category score - tolerance;
        for top_m > 1, of every category whose approximate S_m is >= that k-th best S_m - tolerance, every
        member whose approximate score is >= its approximate m'-th best member score - tolerance."""


def dense_fits(table: CentreTable) -> bool:
    """Whether the dense engine's padded [K_max, C, d] copy stays within DENSE_MAX_PADDING x the table's members."""
    return table.k_max * table.n_categories <= DENSE_MAX_PADDING * table.n_members


def kth_per_row(row: np.ndarray, pos: np.ndarray, values: np.ndarray, k: int, n: int) -> np.ndarray:
    """Values of groups, each at position ``pos`` (0, 1, ...) of its row → each row's k-th largest value
    ([n]; -inf where a row has fewer than k groups)."""
    dense = np.full((n, max(k, int(pos.max(initial=0)) + 1)), -np.inf)  # [n, groups per row]
    dense[row, pos] = values
    return -np.partition(-dense, k - 1, axis=1)[:, k - 1]


def top_mean(scores: np.ndarray, m_eff: np.ndarray, top_m: int) -> tuple[np.ndarray, np.ndarray]:
    """[R, K] member scores (-inf: no member) and [R] m' = min(top_m, |C|) → (mean of the m' best, m'-th best)."""
    m = min(top_m, scores.shape[1])
    top = -np.partition(-scores, m - 1, axis=1)[:, :m] if m < scores.shape[1] else scores  # [R, m] the m best
    top = -np.sort(-top, axis=1)  # best first
    mean = np.where(np.arange(m) < m_eff[:, None], top, 0.0).sum(axis=1, dtype=np.float64) / m_eff
    return mean, top[np.arange(len(top)), m_eff - 1].astype(np.float64)


def member_table(table: CentreTable) -> np.ndarray:
    """[C, K_max] member rows of each category (in table order), -1 past its last member."""
    order = np.argsort(table.owner, kind="stable")  # member rows grouped by category
    starts = np.concatenate([[0], np.cumsum(table.counts)[:-1]])
    members = np.full((table.n_categories, table.k_max), -1, dtype=np.int64)
    members[table.owner[order], np.arange(table.n_members) - starts[table.owner[order]]] = order
    return members
