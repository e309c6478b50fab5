"""Both recognition engines against an exact NumPy brute force, and against each other (bit for bit), for
the paper's max (top_m = 1) and the mean of the m best members (top_m = m)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from unibind.indexer.runtime.device import Device
from unibind.indexer.runtime.faiss_lib import faiss
from unibind.indexer.runtime.vectors import normalize
from unibind.retrieval.recognition.dense_engine import DenseEngine
from unibind.retrieval.recognition.engines import make_engine
from unibind.retrieval.recognition.faiss_engine import FaissEngine
from unibind.retrieval.recognition.engine import CentreTable, Recognition, RecognitionEngine, score_nominated

ENGINES = ("faiss", "dense")
DIM = 32
K = 10
REAL_NAMES = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead", "electric ray"]
TIED = ["zebra", "aardvark", "mongoose"]  # identical members; position order is not name order
TOP_M = (1, 2, 3, 50)  # 50 > K: every category averages all its members


def reference(
    table: CentreTable, queries: np.ndarray, k: int, labels: list[str] | None = None, top_m: int = 1
) -> list[tuple[list[str], list[float]]]:
    """Exact brute force: per query, per category, the mean of its min(top_m, |C|) best correctly rounded
    dot products (math.fsum of the exact float64 products: no summation order, so identical members tie
    exactly; top_m = 1: the max); sort by (-score, name); top k. Queries are prepared as the engines prepare them
    (unit rows, centred when the table is)."""
    q = table.prepare(queries).astype(np.float64)
    z = table.vectors.astype(np.float64)
    sims = np.array([[math.fsum(p) for p in (row * z).tolist()] for row in q])  # [B, M]
    allowed = sorted(set(labels)) if labels is not None else table.names
    rows = {name: np.flatnonzero(table.owner == table.names.index(name)) for name in allowed}
    out = []
    for row in sims:
        per_cat = {}
        for name, members in rows.items():
            best = sorted(row[members].tolist(), reverse=True)[:top_m]
            per_cat[name] = math.fsum(best) / len(best)
        ranked = sorted(per_cat.items(), key=lambda item: (-item[1], item[0]))[:k]
        out.append(([n for n, _ in ranked], [float(s) for _, s in ranked]))
    return out


def check(
    engines: dict[str, RecognitionEngine], queries: np.ndarray, k: int, labels: list[str] | None = None
) -> list[Recognition]:
    """Every engine returns the same labels and bitwise-equal scores, equal to the brute force."""
    results = {name: engine.recognize(queries, k=k, labels=labels) for name, engine in engines.items()}
    first = next(iter(results.values()))
    for name, result in results.items():
        assert result == first, f"{name} differs from {next(iter(results))}"
    (top_m,) = {engine.top_m for engine in engines.values()}
    ref = reference(next(iter(engines.values())).table, queries, k, labels, top_m)
    assert len(first) == len(ref)
    for got, (labels_ref, scores_ref) in zip(first, ref):
        assert got.labels == labels_ref
        np.testing.assert_allclose(got.scores, scores_ref, rtol=0, atol=1e-6)
        assert all(type(s) is float for s in got.scores)
    return first


def build_table(seed: int = 0) -> CentreTable:
    """~50 categories with K = 10 members, some with only 1..3, three with identical members."""
    rng = np.random.default_rng(seed)
    groups: dict[str, np.ndarray] = {}
    names = REAL_NAMES + [f"category {i:02d}" for i in range(41)]
    for i, name in enumerate(names):
        n = int(rng.integers(1, 4)) if i % 7 == 3 else K  # categories with fewer than K descriptions
        groups[name] = normalize(rng.standard_normal((n, DIM)))
    shared = normalize(rng.standard_normal((K, DIM)))
    for name in TIED:
        groups[name] = shared.copy()
    return CentreTable.from_groups(groups)


@pytest.fixture(scope="module")
def table() -> CentreTable:
    return build_table()


def make_engines(table: CentreTable, top_m: int = 1) -> dict[str, RecognitionEngine]:
    return {name: make_engine(name, table, Device(), top_m=top_m) for name in ENGINES}


@pytest.fixture(scope="module")
def engines_by_m(table: CentreTable) -> dict[int, dict[str, RecognitionEngine]]:
    return {m: make_engines(table, m) for m in TOP_M}


@pytest.fixture(scope="module")
def engines(engines_by_m) -> dict[str, RecognitionEngine]:  # type: ignore[no-untyped-def]
    return engines_by_m[1]


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return normalize(np.random.default_rng(1).standard_normal((37, DIM)))


def test_table_shape(table: CentreTable) -> None:
    assert table.n_categories == 50 and table.dim == DIM and table.k_max == K
    assert table.n_members == int(table.counts.sum()) and (table.counts < 4).sum() >= 5


@pytest.mark.parametrize("top_m", TOP_M)
@pytest.mark.parametrize("k", [1, 2, 3, 5, 10, 20, 49, 50, 51, 500])
def test_engines_equal_brute_force(engines_by_m, queries, k: int, top_m: int) -> None:  # type: ignore[no-untyped-def]
    result = check(engines_by_m[top_m], queries, k)
    assert all(len(r.labels) == min(k, 50) for r in result)
    assert all(r.scores == sorted(r.scores, reverse=True) for r in result)


@pytest.mark.parametrize(
    "labels",
    [
        ["tench"],
        ["goldfish", "tiger shark"],
        ["category 03", "tench", "tench", "zebra", "aardvark", "category 10", "category 17"],  # duplicates are fine
        [f"category {i:02d}" for i in range(0, 41, 2)] + TIED,
        None,
    ],
)
@pytest.mark.parametrize("k", [1, 3, 8, 100])
@pytest.mark.parametrize("top_m", TOP_M)
def test_label_subsets(  # type: ignore[no-untyped-def]
    engines_by_m, queries, table, labels, k: int, top_m: int
) -> None:
    result = check(engines_by_m[top_m], queries, k, labels)
    allowed = set(labels or table.names)
    assert all(set(r.labels) <= allowed and len(r.labels) == min(k, len(allowed)) for r in result)


def test_all_labels_equal_no_labels(engines_by_m, queries, table) -> None:  # type: ignore[no-untyped-def]
    for engines in engines_by_m.values():
        for engine in engines.values():
            assert engine.recognize(queries, 4, labels=list(reversed(table.names))) == engine.recognize(queries, 4)


@pytest.mark.parametrize("top_m", TOP_M)
def test_exact_ties_are_ordered_by_name(engines_by_m, table, top_m: int) -> None:  # type: ignore[no-untyped-def]
    engines = engines_by_m[top_m]
    member = table.vectors[np.flatnonzero(table.owner == table.names.index("zebra"))[4]]
    queries = np.stack([member, normalize(member + table.vectors[np.flatnonzero(table.owner == 0)[0]])[0]])
    for k in (1, 2, 3, 5):
        # a query exactly equal to a member shared by three categories, and one halfway to another category
        for result in check(engines, queries, k):
            tied = [label for label in result.labels if label in TIED]
            assert tied == sorted(tied)
            assert len({result.scores[result.labels.index(label)] for label in tied}) <= 1  # bitwise equal
        result = check(engines, member, k)[0]
        assert result.labels[: min(k, 3)] == sorted(TIED)[: min(k, 3)]
        assert result.scores[: min(k, 3)] == [result.scores[0]] * min(k, 3)  # bitwise equal
        if top_m == 1:
            assert abs(result.scores[0] - 1.0) < 1e-6
    (result,) = check(engines, member, 2, labels=["mongoose", "zebra", "tench"])
    assert result.labels == ["mongoose", "zebra"]


def test_query_equal_to_member_recognises_its_category(engines, table) -> None:  # type: ignore[no-untyped-def]
    rows = [int(np.flatnonzero(table.owner == c)[-1]) for c in range(len(REAL_NAMES))]
    for result, row in zip(check(engines, table.vectors[rows], 3), rows):
        assert result.labels[0] == table.names[table.owner[row]]
        assert abs(result.scores[0] - 1.0) < 1e-6


@pytest.mark.parametrize("top_m", [1, 2, 3])
def test_near_ties_below_float32_resolution(top_m: int) -> None:
    """Members 1e-6 apart: float32 cannot order them, the exact float64 step does (and both engines agree)."""
    rng = np.random.default_rng(5)
    base = normalize(rng.standard_normal(DIM))[0]
    groups = {f"near {i}": normalize(base + 1e-6 * (i + 1) * normalize(rng.standard_normal(DIM))[0]) for i in range(8)}
    groups |= {f"far {i}": normalize(rng.standard_normal((3, DIM))) for i in range(20)}
    table = CentreTable.from_groups(groups)
    engines = make_engines(table, top_m)
    queries = np.stack([base, normalize(base + 1e-7 * rng.standard_normal(DIM))[0]])
    for k in (1, 3, 8, 9):
        check(engines, queries, k)


@pytest.mark.parametrize("top_m", [2, 3])
def test_near_tied_means_below_float32_resolution(top_m: int) -> None:
    """Categories sharing their best member whose other members differ by ~3e-7: only their means order
    them, and float32 cannot; a distractor has the single best member but a poor mean."""
    rng = np.random.default_rng(8)
    a, b = normalize(rng.standard_normal((2, DIM)))
    nudge = [3e-7 * (i + 1) * normalize(rng.standard_normal((top_m - 1, DIM))) for i in range(6)]
    groups = {f"mean {i}": np.concatenate([a[None], normalize(b + nudge[i])]) for i in range(6)}
    query = normalize(a + b)[0]
    groups["spike"] = np.concatenate([query[None], normalize(rng.standard_normal((4, DIM)))])
    groups |= {f"far {i}": normalize(rng.standard_normal((4, DIM))) for i in range(15)}
    engines = make_engines(CentreTable.from_groups(groups), top_m)
    for k in (1, 3, 6, 7):
        (result,) = check(engines, query, k)
        assert "spike" not in result.labels[: min(k, 6)]
    assert make_engine("faiss", engines["faiss"].table, Device()).recognize(query, 1)[0].labels == ["spike"]


def test_mean_of_best_members_changes_the_winner() -> None:
    """One very close member vs. several good ones: the max (top_m = 1) and the mean of the best m disagree."""
    rng = np.random.default_rng(3)
    query = normalize(rng.standard_normal(DIM))[0]
    noise = normalize(rng.standard_normal((20, DIM)))
    groups = {
        "one close": normalize(np.concatenate([(query + 0.3 * noise[0])[None], noise[1:4]])),  # cos ~0.95, then ~0
        "three good": normalize(query + 0.9 * noise[4:7]),  # cos ~0.75 each
        "two good": normalize(query + 0.9 * noise[7:9]),  # fewer members than m = 3: their mean
    }
    groups |= {f"other {i}": normalize(rng.standard_normal((3, DIM))) for i in range(10)}
    table = CentreTable.from_groups(groups)
    assert check(make_engines(table, 1), query, 3)[0].labels[0] == "one close"
    for top_m in (2, 3):
        result = check(make_engines(table, top_m), query, 3)[0]
        assert result.labels[0] in ("three good", "two good") and "one close" not in result.labels[:2]


@pytest.mark.parametrize("top_m", [1, 2, 3])
def test_many_tied_categories_fetch_more_neighbours(top_m: int) -> None:
    """Twelve categories with the same five members: the FAISS engine must fetch past its first guess."""
    rng = np.random.default_rng(11)
    shared = normalize(rng.standard_normal((5, DIM)))
    groups = {f"twin {i:02d}": shared for i in range(12)}
    groups |= {f"other {i}": normalize(rng.standard_normal((5, DIM))) for i in range(30)}
    table = CentreTable.from_groups(groups)
    engines = make_engines(table, top_m)
    for k in (1, 2, 12, 13):
        results = check(engines, np.concatenate([shared[:2], normalize(rng.standard_normal((3, DIM)))]), k)
        assert results[0].labels[: min(k, 12)] == [f"twin {i:02d}" for i in range(min(k, 12))]


@pytest.mark.parametrize("grouped", [True, False])
def test_faiss_rescoring_paths(grouped: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """top_m > 1: FAISS rescores partly fetched categories by one BLAS product per category (many queries
    per category) or by FAISS's inner products by id (few); with members stored grouped by category or
    interleaved. Every path gives the brute force's answer."""
    rng = np.random.default_rng(21)
    n_cat, per = 60, 8
    vectors = normalize(rng.standard_normal((n_cat * per, DIM)))
    owner = np.repeat(np.arange(n_cat), per)
    if not grouped:
        shuffle = rng.permutation(len(owner))
        vectors, owner = vectors[shuffle], owner[shuffle]
    owner[owner == 7] = 8  # one category with 2 * per members, another with none: drop it
    owner = np.where(owner > 7, owner - 1, owner)
    table = CentreTable([f"c{i:02d}" for i in range(n_cat - 1)], vectors, owner)
    calls = []
    by_idx = faiss.fvec_inner_products_by_idx
    monkeypatch.setattr(faiss, "fvec_inner_products_by_idx", lambda *a: calls.append(a[5]) or by_idx(*a))
    engines = make_engines(table, 2)
    assert engines["faiss"]._grouped is grouped
    queries = normalize(vectors[rng.integers(0, len(vectors), 300)] + 0.8 * rng.standard_normal((300, DIM)))
    check(engines, queries, 5)  # many queries per category: BLAS
    blas_only = len(calls)
    for b in range(3):
        check(engines, queries[b], 3)  # one query: inner products by id
    assert len(calls) > blas_only
    check(make_engines(table, 3), queries[:40], 4, labels=[f"c{i:02d}" for i in range(0, 59, 2)])


def test_fetch_hint_changes_only_the_speed(table) -> None:  # type: ignore[no-untyped-def]
    """The FAISS engine starts its next search as deep as the last call needed; answers never depend on it."""
    engine = FaissEngine(table, Device(), top_m=2)
    queries = normalize(np.random.default_rng(4).standard_normal((20, DIM)))
    first = engine.recognize(queries, 3)
    assert engine._fetch_hint  # (k, index size) → depth
    engine._fetch_hint[(3, table.n_members)] = table.n_members  # deepest possible
    assert engine.recognize(queries, 3) == first
    engine._fetch_hint.clear()
    assert engine.recognize(queries[:1], 3) == first[:1]
    for k in range(1, 20):
        engine.recognize(queries[:1], k)
    assert len(engine._fetch_hint) <= FaissEngine.FETCH_HINTS


@pytest.mark.parametrize("top_m", [1, 2, 50])
@pytest.mark.parametrize("budget", [4 * K * 7, 4 * K * DIM * 3, 4 * 50 * K * 5])
def test_dense_chunking_changes_nothing(  # type: ignore[no-untyped-def]
    table, queries, engines_by_m, budget: int, top_m: int
) -> None:
    """Tiny memory budgets force query chunks, category blocks and the two-pass path."""
    small = DenseEngine(table, Device(), memory_budget=budget, top_m=top_m)
    subset = [f"category {i:02d}" for i in range(0, 41, 3)] + TIED
    for k, labels in [(1, None), (5, None), (60, None), (2, subset), (4, ["tench"]), (30, subset)]:
        assert small.recognize(queries, k, labels) == engines_by_m[top_m]["faiss"].recognize(queries, k, labels)


@pytest.mark.parametrize("numpy_rows", [0, 8])
@pytest.mark.parametrize("top_m", [2, 3, 50])
def test_dense_small_batches(  # type: ignore[no-untyped-def]
    table, queries, engines_by_m, top_m: int, numpy_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the CPU the dense engine nominates batches of up to NUMPY_ROWS_MAX queries one query at a time in NumPy
    (numpy_rows = 8), larger ones with batched torch ops (numpy_rows = 0 forces them for every batch): both equal
    the brute force, one query at a time, a few at once, with and without label subsets and short categories."""
    monkeypatch.setattr("unibind.retrieval.recognition.dense_engine.NUMPY_ROWS_MAX", numpy_rows)
    dense = DenseEngine(table, Device(), top_m=top_m)
    subset = [f"category {i:02d}" for i in range(0, 41, 3)] + TIED + ["electric ray"]
    for k, labels in [(1, None), (5, None), (60, None), (2, subset), (4, ["tench"]), (len(subset), subset)]:
        for b0, b1 in [(0, 1), (1, 2), (7, 8), (2, 5), (10, 18)]:
            check({"dense": dense}, queries[b0:b1], k, labels)
        assert dense.recognize(queries[20:23], k, labels) == engines_by_m[top_m]["faiss"].recognize(
            queries[20:23], k, labels
        )


@pytest.mark.parametrize("top_m", [1, 2, 3])
def test_exact_scores_do_not_depend_on_the_batch(table, queries, top_m: int) -> None:  # type: ignore[no-untyped-def]
    """The shared exact step gives a pair the same float64 score whatever other pairs come along (here: all
    16,000 pairs in slices, vs. one query at a time, vs. each category's members alone)."""
    B, M = len(queries), table.n_members
    qi, mi = np.repeat(np.arange(B), M), np.tile(np.arange(M), B)
    together = score_nominated(table, queries, qi, mi, 50, top_m)
    alone = [
        score_nominated(table, queries[b : b + 1], np.zeros(M, np.int64), np.arange(M), 50, top_m)[0] for b in range(B)
    ]
    assert together == alone
    for b in (0, 17):
        for c in range(0, 50, 7):
            rows = np.flatnonzero(table.owner == c)
            (one,) = score_nominated(table, queries[b : b + 1], np.zeros(len(rows), np.int64), rows[::-1], 1, top_m)
            assert one.scores[0] == together[b].scores[together[b].labels.index(table.names[c])]


def test_one_query_and_empty_batch(engines, queries) -> None:  # type: ignore[no-untyped-def]
    for engine in engines.values():
        assert engine.recognize(queries[5], 4) == engine.recognize(queries[5:6], 4)
        assert len(engine.recognize(queries[5], 4)) == 1
        assert engine.recognize(np.empty((0, DIM), np.float32), 3) == []
        unnormalised = engine.recognize(queries[:3] * 7.5, 4)  # queries are normalised by the engine
        assert [r.labels for r in unnormalised] == [r.labels for r in engine.recognize(queries[:3], 4)]


def test_subset_cache_is_bounded(table, queries) -> None:  # type: ignore[no-untyped-def]
    engine = FaissEngine(table, Device())
    for labels in (["tench"], ["goldfish"], ["tench", "goldfish"], ["tench"]):
        check({"faiss": engine}, queries[:4], 2, labels)
    assert len(engine._subsets) == FaissEngine.SUBSET_CACHE


def test_unknown_label_suggests_close_names(engines) -> None:  # type: ignore[no-untyped-def]
    q = np.ones(DIM, np.float32)
    for engine in engines.values():
        with pytest.raises(ValueError, match=r"^unknown label 'tenchh'; did you mean 'tench'\?$"):
            engine.recognize(q, 3, labels=["goldfish", "tenchh"])
        with pytest.raises(ValueError, match=r"^unknown label 'xyzzy-42'$"):
            engine.recognize(q, 3, labels=["xyzzy-42"])
        with pytest.raises(ValueError, match="labels is empty"):
            engine.recognize(q, 3, labels=[])
        with pytest.raises(ValueError, match="not the string 'tench'"):
            engine.recognize(q, 3, labels="tench")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "queries, k, message",
    [
        (np.ones((2, DIM + 1), np.float32), 3, r"queries of shape \(2, 33\) do not fit centres of dimension 32"),
        (np.ones(DIM - 1, np.float32), 3, r"queries of shape \(31,\) do not fit"),
        (np.ones((2, 2, DIM), np.float32), 3, r"queries of shape \(2, 2, 32\) do not fit"),
        (np.ones((2, DIM), np.float32), 0, "k must be an integer >= 1, got 0"),
        (np.ones((2, DIM), np.float32), -2, "k must be an integer >= 1, got -2"),
        (np.ones((2, DIM), np.float32), 2.5, "k must be an integer >= 1, got 2.5"),
        (np.zeros((2, DIM), np.float32), 3, "vector 0 has zero length"),
        (np.full((1, DIM), np.nan, np.float32), 3, "vector 0 contains NaN"),
    ],
)
def test_bad_queries_and_k(engines, queries, k, message: str) -> None:  # type: ignore[no-untyped-def]
    for engine in engines.values():
        with pytest.raises(ValueError, match=message):
            engine.recognize(queries, k)


def test_make_engine(table, engines, queries) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(make_engine("faiss", table, Device()), FaissEngine)
    assert isinstance(make_engine("dense", table, Device()), DenseEngine)
    with pytest.raises(ValueError, match=r"unknown recognition engine 'annoy'; choose from dense, faiss"):
        make_engine("annoy", table, Device())
    for name in ENGINES:
        engine = make_engine(name, table, Device(), top_m=np.int64(1))
        assert engine.top_m == 1 and engines[name].top_m == 1  # the paper's max is the default
        assert engine.recognize(queries, 5) == engines[name].recognize(queries, 5)
        assert make_engine(name, table, Device(), top_m=3).top_m == 3


@pytest.mark.parametrize("bad", [0, -2, 2.0, 1.5, True, "2", None])
def test_top_m_validation(table, queries, bad) -> None:  # type: ignore[no-untyped-def]
    message = rf"^top_m must be an integer >= 1 \(1 = the paper's max\), got {re.escape(repr(bad))}$"
    with pytest.raises(ValueError, match=message):
        make_engine("faiss", table, Device(), top_m=bad)
    with pytest.raises(ValueError, match=message):
        FaissEngine(table, Device(), top_m=bad)
    with pytest.raises(ValueError, match=message):
        DenseEngine(table, Device(), top_m=bad)
    with pytest.raises(ValueError, match=message):
        score_nominated(table, queries, np.zeros(1, np.int64), np.zeros(1, np.int64), 1, bad)


def test_centre_table_validation() -> None:
    v = normalize(np.random.default_rng(2).standard_normal((4, 8)))
    owner = np.array([0, 0, 1, 2])
    CentreTable(["a", "b", "c"], v, owner)
    cases = [
        (["a", "b", "a"], v, owner, "category name 'a' appears twice"),
        (["a", "b", "c", "d"], v, owner, "category 'd' has no centre members"),
        (["a", "b"], v, owner, "member 3: owner 2 is not a category position 0..1"),
        (["a", "b", "c"], v, owner[:3], r"owner must be \[M\] = \[4\] integers"),
        (["a", "b", "c"], v, owner.astype(float), "owner must be"),
        (["a", "b", "c"], v * 2, owner, "centre member 0 has norm 2: members must be L2-normalised"),
        (["a", "b", "c"], v[:, 0], owner, r"centre vectors must be \[M, d\]"),
        (["a", "", "c"], v, owner, "category 1: name must be a non-empty string"),
        ([], v, owner, "at least one category"),
    ]
    for names, vectors, own, message in cases:
        with pytest.raises(ValueError, match=message):
            CentreTable(names, vectors, own)
    with pytest.raises(ValueError, match="at least one category"):
        CentreTable.from_groups({})


@pytest.mark.slow
def test_real_minilm_sentences(minilm, cpu) -> None:  # type: ignore[no-untyped-def]
    descriptions = {
        "tench": [
            "A tench is a freshwater fish with olive-green scales.",
            "The tench lives in slow, weedy rivers and lakes.",
            "A stout green fish with small red eyes, found in European ponds.",
        ],
        "bald eagle": ["A large bird of prey with a white head and a yellow hooked beak.",
                       "The bald eagle soars over lakes hunting for fish."],
        "fire truck": [
            "A red emergency vehicle with ladders and a siren.",
            "A large truck that carries firefighters and hoses.",
            "Fire engines are bright red and have flashing lights.",
            "A vehicle used to put out fires.",
        ],
        "espresso": ["A small cup of strong black coffee with a layer of crema."],
        "violin": ["A wooden string instrument played with a bow.", "A violin has four strings and an hourglass-shaped body."],
    }
    table = CentreTable.from_groups({name: minilm.encode_text(texts) for name, texts in descriptions.items()})
    engines = {name: make_engine(name, table, cpu) for name in ENGINES}
    engines2 = {name: make_engine(name, table, cpu, top_m=2) for name in ENGINES}
    queries = minilm.encode_text([
        "an olive-green fish swimming among pond weeds",
        "a firefighter's vehicle racing down the street",
        "a musician playing a bowed string instrument",
        "a shot of dark coffee",
        "an eagle catching a fish",
    ])
    for k in (1, 2, 5, 6):
        result = check(engines, queries, k)
        assert [r.labels[0] for r in result] == ["tench", "fire truck", "violin", "espresso", "bald eagle"]
    check(engines, queries, 2, labels=["violin", "espresso"])
    for k in (1, 3, 6):
        check(engines2, queries, k)
    check(engines2, queries, 2, labels=["violin", "espresso", "tench"])


@pytest.mark.gpu
def test_gpu_engines_equal_brute_force(table, queries) -> None:  # type: ignore[no-untyped-def]
    from unibind.indexer.runtime.device import select_device

    device = select_device("auto")
    if device.torch == "cpu":
        pytest.skip("no CUDA GPU")
    for top_m in (1, 2, 50):
        engines = {name: make_engine(name, table, device, top_m=top_m) for name in ENGINES}
        for k in (1, 5, 50, 51):
            check(engines, queries, k)
        check(engines, queries, 3, labels=["tench", "zebra", "aardvark", "category 05"])
        cpu_result = make_engine("dense", table, Device(), top_m=top_m).recognize(queries, 5)
        assert engines["dense"].recognize(queries, 5) == cpu_result  # the exact step makes devices agree too


def centred_reference(raw: CentreTable, queries: np.ndarray, k: int, top_m: int) -> list[tuple[list[str], list[float]]]:
    """The default rule from its definition, independently of CentreTable.centred: mu = the mean of the category
    means of the raw members; members and queries minus mu, renormalised; per category the mean of its top_m best
    (math.fsum), sorted by (-score, name)."""
    z = raw.vectors.astype(np.float64)
    mu = np.mean([z[raw.owner == c].mean(axis=0) for c in range(raw.n_categories)], axis=0)
    zc = (z - mu) / np.linalg.norm(z - mu, axis=1, keepdims=True)
    q = queries.astype(np.float64) / np.linalg.norm(queries.astype(np.float64), axis=1, keepdims=True)
    qc = (q - mu) / np.linalg.norm(q - mu, axis=1, keepdims=True)
    # the engines score the float32 centred vectors exactly; so does the reference
    zc, qc = zc.astype(np.float32).astype(np.float64), qc.astype(np.float32).astype(np.float64)
    out = []
    for row in qc:
        per_cat = {}
        for c, name in enumerate(raw.names):
            sims = [math.fsum(p) for p in (row * zc[raw.owner == c]).tolist()]
            best = sorted(sims, reverse=True)[:top_m]
            per_cat[name] = math.fsum(best) / len(best)
        ranked = sorted(per_cat.items(), key=lambda item: (-item[1], item[0]))[:k]
        out.append(([n for n, _ in ranked], [s for _, s in ranked]))
    return out


@pytest.mark.parametrize("top_m", [1, 3])
@pytest.mark.parametrize("k", [1, 5, 50])
def test_centred_table_equals_the_definition(table, queries, k: int, top_m: int) -> None:  # type: ignore[no-untyped-def]
    """The recognizer's default rule (centred space, mean of the 3 best) is exact in both engines."""
    centred = table.centred()
    assert centred.mean is not None and centred.names == table.names and (centred.owner == table.owner).all()
    assert np.allclose(np.linalg.norm(centred.vectors, axis=1), 1, atol=1e-6)
    assert centred.centred() is centred  # centring twice is centring once
    results = {name: engine.recognize(queries, k=k) for name, engine in make_engines(centred, top_m).items()}
    assert results["faiss"] == results["dense"]
    for got, (labels, scores) in zip(results["faiss"], centred_reference(table, queries, k, top_m)):
        assert got.labels == labels
        np.testing.assert_allclose(got.scores, scores, rtol=0, atol=1e-6)


def test_centring_needs_two_categories_and_directions() -> None:
    e = np.eye(4, dtype=np.float32)
    one = CentreTable(["a"], e[:2], np.array([0, 0]))
    assert one.centred() is one and one.centred().mean is None  # one category: nothing to centre on
    same = CentreTable(["a", "b"], e[[0, 0]], np.array([0, 1]))
    assert same.centred() is same  # every member is the mean direction: nothing left after centring
    two = CentreTable(["a", "b"], e[[0, 1]], np.array([0, 1])).centred()
    np.testing.assert_allclose(two.mean, [0.5, 0.5, 0, 0])
    np.testing.assert_allclose(two.vectors, [[2 ** -0.5, -(2 ** -0.5), 0, 0], [-(2 ** -0.5), 2 ** -0.5, 0, 0]], atol=1e-7)
    # a query that is the mean direction itself keeps its raw direction; others are centred
    mean = normalize(np.array([1.0, 1.0, 0, 0]))[0]
    table = CentreTable(["a", "b"], e[[0, 1]], np.array([0, 1]), mean=mean)
    out = table.prepare(np.stack([mean, e[2]]))
    np.testing.assert_allclose(out[0], mean, atol=1e-7)
    np.testing.assert_allclose(out[1], normalize(e[2] - mean)[0], atol=1e-7)
    assert table.prepare(np.empty((0, 4), dtype=np.float32)).shape == (0, 4)
    with pytest.raises(ValueError, match=r"mean must be a finite \[4\] vector"):
        CentreTable(["a", "b"], e[[0, 1]], np.array([0, 1]), mean=np.ones(3))
