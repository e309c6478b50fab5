"""The vector backends (FAISS files, Milvus through milvus-lite) against an exact NumPy search, and exact
recognition over either of them against the FAISS engine and a brute force, on clustered data where a category's
members crowd the top hits (so the pigeonhole over-fetch matters).

The Milvus tests need the optional extra (``pip install 'unibind[milvus]'``): skipped without it, except under CI
(``CI=true``), where ``.ci/run`` installs it and a missing pymilvus or milvus-lite fails them. They are marked
``slow`` (each starts an embedded milvus-lite server in a temporary folder).
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from unibind.indexer.index.backend import FaissBackend, Filter, VectorBackend, check_field_types
from unibind.indexer.runtime.device import Device
from unibind.indexer.runtime.vectors import normalize
from unibind.retrieval.recognition.backend_engine import BackendEngine
from unibind.retrieval.recognition.engine import CentreTable
from unibind.retrieval.recognition.faiss_engine import FaissEngine
from unibind.schema.errors import Conflict, InvalidInput, Unavailable
from tests.test_recognition_engine import reference

IN_CI = os.environ.get("CI", "").lower() == "true"


def missing_modules(names: tuple[str, ...] = ("pymilvus", "milvus_lite")) -> list[str]:
    """The Milvus extra's modules that cannot be imported (absent, or broken)."""
    out = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            out.append(name)
    return out


MISSING = missing_modules()
DIM = 16
FIELDS = {"category": "int64", "label": "str"}
LABELS = ["plain", 'say "hi"', "back\\slash", "it's", "naïve, with spaces"]  # quoting and escaping
BACKENDS = ("faiss", pytest.param("milvus", marks=pytest.mark.slow))


def need_milvus() -> None:
    if MISSING:
        message = f"{' and '.join(MISSING)} not installed: make extras (or the milvus and milvus-lite extras, see docs/store.md) to run the Milvus tests"
        if IN_CI:
            pytest.fail(message + " (CI=true: make test installs the extras, so the Milvus tests must run)")
        pytest.skip(message)


def make_backend(kind: str, folder: Path, dim: int = DIM, fields: dict[str, str] | None = None,
                 collection: str = "rows") -> VectorBackend:
    fields = FIELDS if fields is None else fields
    if kind == "faiss":
        return FaissBackend(dim, fields=fields, path=folder / "rows.faiss", device=Device())
    need_milvus()
    from unibind.indexer.index.milvus_backend import MilvusBackend

    return MilvusBackend(str(folder / "lite"), collection, dim, fields=fields)


@pytest.fixture
def opener(tmp_path: Path) -> Iterator[Callable[..., VectorBackend]]:
    """Opens backends in the test's folder and closes every one at the end."""
    opened: list[VectorBackend] = []

    def open_(kind: str, **kwargs: object) -> VectorBackend:
        backend = make_backend(kind, tmp_path, **kwargs)  # type: ignore[arg-type]
        opened.append(backend)
        return backend

    yield open_
    for backend in opened:
        backend.close()


def rows(n: int, seed: int = 0, dim: int = DIM) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    ids = rng.choice(10 * n + 100, size=n, replace=False).astype(np.int64) * 7  # sparse keys, not 0..n-1
    cols = {"category": rng.integers(0, 6, n), "label": np.array([LABELS[i] for i in rng.integers(0, len(LABELS), n)])}
    return ids, normalize(rng.standard_normal((n, dim))), cols


def numpy_search(ids: np.ndarray, vectors: np.ndarray, q: np.ndarray, k: int,
                 keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k (float64 products), padded with -inf / -1."""
    if keep is not None:
        ids, vectors = ids[keep], vectors[keep]
    sims = q.astype(np.float64) @ vectors.astype(np.float64).T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    scores = np.full((len(q), k), -np.inf)
    out = np.full((len(q), k), -1, dtype=np.int64)
    n = order.shape[1]
    scores[:, :n] = np.take_along_axis(sims, order, axis=1)
    out[:, :n] = ids[order]
    return scores, out


def assert_same_hits(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray]) -> None:
    """Same padding, score multisets within 1e-5, and the same ids wherever the scores are distinct."""
    (gs, gi), (ws, wi) = got, want
    assert gs.shape == ws.shape and gi.shape == wi.shape and gs.dtype == np.float32 and gi.dtype == np.int64
    np.testing.assert_array_equal(gi < 0, wi < 0)
    np.testing.assert_array_equal(np.isinf(gs), np.isinf(ws))
    finite = np.isfinite(ws)
    np.testing.assert_allclose(np.sort(gs[finite]), np.sort(ws[finite]), atol=1e-5, rtol=0)
    for b in range(len(ws)):
        for j in np.flatnonzero(finite[b]):
            others = np.delete(ws[b][finite[b]], j)
            if np.all(np.abs(others - ws[b, j]) > 1e-4):  # a distinct score: its id must match
                assert gi[b, j] == wi[b, j], f"query {b}, rank {j}"


FILTERS = [
    None,
    Filter.eq("category", 2),
    Filter.isin("category", [0, 3, 5]),
    Filter.eq("label", 'say "hi"'),
    Filter.isin("label", ["back\\slash", "it's"]) & Filter.isin("category", [1, 2, 3, 4]),
    Filter.isin("category", [99]),  # nothing matches
    Filter.isin("category", []),  # nothing can match
]


# -- the backend contract ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", BACKENDS)
def test_search_equals_numpy_with_and_without_filters(opener, kind: str) -> None:  # type: ignore[no-untyped-def]
    backend = opener(kind)
    ids, vectors, cols = rows(300)
    backend.upsert(ids, vectors, cols)
    backend.flush()
    assert backend.count() == 300
    q = normalize(np.random.default_rng(9).standard_normal((7, DIM)))
    for f in FILTERS:
        keep = None if f is None else f.mask(cols)
        for k in (1, 10, 64, 400):  # 400 > rows: padded
            assert_same_hits(backend.search(q, k, f), numpy_search(ids, vectors, q, k, keep))


@pytest.mark.parametrize("kind", BACKENDS)
def test_filtered_search_returns_exactly_k_when_k_rows_match(opener, kind: str) -> None:  # type: ignore[no-untyped-def]
    """Issue 14 item 3: a filter that a few rows pass still gets k hits (no post-filtering of a top-k)."""
    backend = opener(kind)
    ids, vectors, cols = rows(500, seed=3)
    cols["category"][:] = 0
    rare = np.arange(0, 500, 50)  # 10 rows of category 7, scattered
    cols["category"][rare] = 7
    backend.upsert(ids, vectors, cols)
    backend.flush()
    q = normalize(np.random.default_rng(4).standard_normal((5, DIM)))
    for k in (1, 5, 10):
        scores, got = backend.search(q, k, Filter.eq("category", 7))
        assert (got >= 0).all() and set(got.ravel().tolist()) <= set(ids[rare].tolist())
    scores, got = backend.search(q, 12, Filter.eq("category", 7))
    assert ((got >= 0).sum(axis=1) == 10).all() and np.isneginf(scores[:, 10:]).all()


@pytest.mark.parametrize("kind", BACKENDS)
def test_upsert_overwrites_and_delete_removes(opener, kind: str) -> None:  # type: ignore[no-untyped-def]
    backend = opener(kind)
    ids, vectors, cols = rows(100, seed=1)
    backend.upsert(ids, vectors, cols)
    # overwrite 20 rows: new vectors and new fields under the same keys
    _, new_vectors, _ = rows(20, seed=2)
    new_cols = {"category": np.full(20, 5), "label": np.array(["plain"] * 20)}
    backend.upsert(ids[:20], new_vectors, new_cols)
    vectors = vectors.copy()
    vectors[:20] = new_vectors
    cols = {name: col.copy() for name, col in cols.items()}
    for name in cols:
        cols[name][:20] = new_cols[name]
    backend.flush()
    assert backend.count() == 100
    backend.delete(np.concatenate([ids[90:], [123456789]]))  # an unknown key is ignored
    backend.flush()
    assert backend.count() == 90
    ids, vectors, cols = ids[:90], vectors[:90], {n: c[:90] for n, c in cols.items()}
    q = np.concatenate([new_vectors[:3], normalize(np.random.default_rng(5).standard_normal((3, DIM)))])
    for f in (None, Filter.eq("category", 5), Filter.isin("label", ["plain", "it's"])):
        keep = None if f is None else f.mask(cols)
        assert_same_hits(backend.search(q, 15, f), numpy_search(ids, vectors, q, 15, keep))
    assert backend.search(new_vectors[:1], 1)[1][0, 0] == ids[0]  # the overwritten vector is found under its key


@pytest.mark.parametrize("kind", BACKENDS)
def test_reopen_sees_what_was_flushed(opener, kind: str) -> None:  # type: ignore[no-untyped-def]
    first = opener(kind)
    ids, vectors, cols = rows(200, seed=6)
    first.upsert(ids, vectors, cols)
    first.delete(ids[:10])
    first.flush()
    q = normalize(np.random.default_rng(7).standard_normal((4, DIM)))
    before = first.search(q, 20, Filter.isin("category", [1, 2]))
    first.close()
    again = opener(kind)  # a new backend on the same folder
    again.load()
    assert again.count() == 190
    after = again.search(q, 20, Filter.isin("category", [1, 2]))
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_allclose(after[0], before[0], atol=1e-6)
    assert again.describe()["count"] == 190 and again.describe()["backend"] == kind


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_dimension_mismatch_is_a_conflict(opener, kind: str) -> None:  # type: ignore[no-untyped-def]
    first = opener(kind)
    ids, vectors, cols = rows(10)
    first.upsert(ids, vectors, cols)
    first.flush()
    first.close()
    with pytest.raises(Conflict, match="dimension 16"):
        opener(kind, dim=DIM + 1)


@pytest.mark.parametrize("kind", BACKENDS)
def test_bad_rows_and_filters_are_invalid_input(opener, kind: str) -> None:  # type: ignore[no-untyped-def]
    backend = opener(kind)
    ids, vectors, cols = rows(5)
    with pytest.raises(InvalidInput, match="fields"):
        backend.upsert(ids, vectors, {"category": cols["category"]})
    with pytest.raises(InvalidInput, match="repeat"):
        backend.upsert(np.zeros(5, dtype=np.int64), vectors, cols)
    with pytest.raises(InvalidInput, match="negative"):
        backend.upsert(-ids - 1, vectors, cols)
    with pytest.raises(InvalidInput, match="dimension"):
        backend.upsert(ids, vectors[:, :3], cols)
    backend.upsert(ids, vectors, cols)
    with pytest.raises(InvalidInput, match="unknown field 'colour'"):
        backend.search(vectors, 3, Filter.eq("colour", 1))
    with pytest.raises(InvalidInput, match="int64"):
        backend.search(vectors, 3, Filter.eq("category", "2"))
    with pytest.raises(InvalidInput, match="k must be"):
        backend.search(vectors, 0)


def test_filters_validate_their_values() -> None:
    with pytest.raises(InvalidInput, match="boolean"):
        Filter.eq("category", True)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="mix"):
        Filter.isin("category", [1, "a"])
    with pytest.raises(InvalidInput, match="field name"):
        Filter.eq("category; drop", 1)
    with pytest.raises(InvalidInput, match="not allowed"):
        check_field_types({"id": "int64"})
    assert Filter.isin("category", np.array([3, 3, 1])).clauses[0].values == (3, 1)


def test_milvus_expressions_quote_and_escape_strings() -> None:
    need_milvus()
    from unibind.indexer.index.milvus_backend import expression

    f = Filter.isin("category", [1, 2]) & Filter.eq("label", 'a "b" \\ c')
    assert expression(f) == 'category in [1, 2] and label == "a \\"b\\" \\\\ c"'
    assert expression(Filter.eq("category", 3)) == "category == 3"  # ==, never = (Milvus rejects =)


def test_vectors_specs() -> None:
    from unibind.indexer.index.milvus_backend import VectorsSpec, parse_vectors_spec  # no pymilvus needed

    assert parse_vectors_spec(None) == parse_vectors_spec("faiss") == VectorsSpec("faiss")
    assert parse_vectors_spec("milvus-lite:/data/v") == VectorsSpec("milvus-lite", "/data/v")
    assert parse_vectors_spec("milvus://db.local:19530") == VectorsSpec("milvus", "http://db.local:19530")
    for bad in ("milvus", "milvus-lite:", "milvus://host", "milvus://host:99999", "qdrant://h:1", "FAISS!"):
        with pytest.raises(InvalidInput, match="milvus-lite:PATH or milvus://host:port"):
            parse_vectors_spec(bad)


@pytest.mark.slow
def test_an_unreachable_server_is_unavailable_quickly() -> None:
    need_milvus()
    from unibind.indexer.index.milvus_backend import MilvusBackend

    # a short connect timeout: the error comes at once (no timing is asserted: tests never assert timings)
    with pytest.raises(Unavailable, match=r"http://127\.0\.0\.1:1") as err:
        MilvusBackend("http://127.0.0.1:1", "rows", DIM, timeout=5)
    assert "\n" not in str(err.value) and "cannot be reached" in str(err.value)


# -- exact recognition over a backend ---------------------------------------------------------------------------

N_CATS, PER_CAT = 40, 12


def clustered_table(seed: int = 0) -> CentreTable:
    """40 categories x 12 members (a few with fewer); a category's members at cosine ~0.9 of its direction, so
    the nearest members of a query near a category are all that category's: the pigeonhole fetch is needed."""
    rng = np.random.default_rng(seed)
    directions = normalize(rng.standard_normal((N_CATS, DIM)))
    groups = {}
    for c in range(N_CATS):
        n = 3 if c % 9 == 4 else PER_CAT
        noise = normalize(rng.standard_normal((n, DIM)))
        groups[f"category {c:02d}"] = normalize(0.9 * directions[c] + math.sqrt(1 - 0.81) * noise)
    return CentreTable.from_groups(groups)


def clustered_queries(table: CentreTable, seed: int = 1) -> np.ndarray:
    """Queries near a few categories' directions (members plus noise), plus a few random ones."""
    rng = np.random.default_rng(seed)
    near = table.vectors[rng.choice(table.n_members, 20, replace=False)]
    return normalize(np.concatenate([near + 0.3 * normalize(rng.standard_normal((20, DIM))),
                                     rng.standard_normal((4, DIM))]))


SUBSETS = [None, [f"category {c:02d}" for c in (0, 4, 5, 6, 13, 22, 23, 31)]]


@pytest.fixture(scope="module")
def table() -> CentreTable:
    return clustered_table()


def test_clustered_data_needs_the_over_fetch(table: CentreTable) -> None:
    """The data does what it is for: a query's 10 nearest members come from far fewer than 10 categories."""
    q = table.prepare(clustered_queries(table))[:20]
    nearest = np.argsort(-(q @ table.vectors.T), axis=1)[:, :10]
    assert np.mean([len(set(table.owner[r].tolist())) for r in nearest]) < 3


@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.parametrize("top_m", [1, 3])
def test_backend_engine_equals_faiss_engine_and_brute_force(  # type: ignore[no-untyped-def]
    opener, table: CentreTable, kind: str, top_m: int
) -> None:
    backend = opener(kind, fields={"category": "int64"}, collection="centres")
    engine = BackendEngine(table, Device(), backend, top_m=top_m)
    faiss_engine = FaissEngine(table, Device(), top_m=top_m)
    queries = clustered_queries(table)
    for labels in SUBSETS:
        for k in (1, 5, 10):
            got = engine.recognize(queries, k=k, labels=labels)
            assert got == faiss_engine.recognize(queries, k=k, labels=labels)  # labels and bitwise scores
            for result, (names, scores) in zip(got, reference(table, queries, k, labels, top_m)):
                assert result.labels == names
                np.testing.assert_allclose(result.scores, scores, rtol=0, atol=1e-6)
                assert len(result.labels) == min(k, len(labels or table.names))


@pytest.mark.parametrize("top_m", [1, 3])
def test_fetches_beyond_the_backends_hit_limit_search_the_table(tmp_path: Path, table: CentreTable, top_m: int) -> None:
    """A Milvus server answers at most 16,384 hits per search; a backend with such a limit (here a FAISS backend
    capped at 12 hits, below the 37 = (k - 1)·M + 1 that k = 4 needs) refuses a bigger search with one line, and
    recognition answers those fetches from its centre table instead: still equal to the FAISS engine and the
    brute force."""
    capped = FaissBackend(DIM, fields={"category": "int64"}, path=tmp_path / "capped.faiss", max_k=12)
    engine = BackendEngine(table, Device(), capped, top_m=top_m)
    faiss_engine = FaissEngine(table, Device(), top_m=top_m)
    queries = clustered_queries(table)
    for labels in SUBSETS:
        for k in (1, 4, 10):
            got = engine.recognize(queries, k=k, labels=labels)
            assert got == faiss_engine.recognize(queries, k=k, labels=labels)
            for result, (names, scores) in zip(got, reference(table, queries, k, labels, top_m)):
                assert result.labels == names
                np.testing.assert_allclose(result.scores, scores, rtol=0, atol=1e-6)
    with pytest.raises(InvalidInput, match=r"^the faiss backend returns at most 12 hits per search; 13 were asked for$"):
        capped.search(queries[:2], 13)
    with pytest.raises(InvalidInput, match="max_k must be an integer >= 1"):
        FaissBackend(DIM, max_k=0)


@pytest.mark.parametrize("kind", BACKENDS)
def test_backend_engine_on_a_centred_table(opener, table: CentreTable, kind: str) -> None:  # type: ignore[no-untyped-def]
    """The recognizer's default space (members and queries centred on the members' mean direction)."""
    centred = table.centred()
    backend = opener(kind, fields={"category": "int64"}, collection="centred")
    engine = BackendEngine(centred, Device(), backend, top_m=3)
    queries = clustered_queries(table, seed=2)
    got = engine.recognize(queries, k=5)
    assert got == FaissEngine(centred, Device(), top_m=3).recognize(queries, k=5)
    assert [r.labels for r in got] == [names for names, _ in reference(centred, queries, 5, None, 3)]


def test_backend_engine_needs_a_category_field(opener, table: CentreTable) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match="category"):
        BackendEngine(table, Device(), opener("faiss", fields={"label": "str"}))


def test_a_backend_missing_members_is_a_conflict(opener, table: CentreTable) -> None:  # type: ignore[no-untyped-def]
    backend = opener("faiss", fields={"category": "int64"})
    engine = BackendEngine(table, Device(), backend)
    backend.delete(np.arange(0, table.n_members, 2))
    with pytest.raises(Conflict, match="repopulate"):
        engine.recognize(clustered_queries(table), k=40)


def test_recognition_does_not_use_milvus_grouping_search() -> None:
    """Milvus's ``group_by_field`` search is not exact (a group may be represented by a member other than its best,
    and groups can be missed), so the backend engine never asks for it: the nominations are plain top-k searches
    (pigeonhole over-fetch + exact rescoring). This pins that: the modules never mention the parameter in code."""
    root = Path(__file__).resolve().parent.parent
    for rel in ("retrieval/recognition/backend_engine.py", "indexer/index/milvus_backend.py"):
        code = [line for line in (root / rel).read_text().splitlines() if not line.lstrip().startswith("#")]
        text = "\n".join(code)
        assert "group_by_field=" not in text and "group_size" not in text, rel


def test_a_missing_pymilvus_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys

    from unibind.indexer.index.milvus_backend import MilvusBackend

    monkeypatch.setitem(sys.modules, "pymilvus", None)  # import pymilvus now raises ImportError
    with pytest.raises(InvalidInput, match=r"pip install 'unibind\[milvus\]'"):
        MilvusBackend(str(tmp_path / "lite"), "rows", DIM)


@pytest.mark.parametrize("factory", ["HNSW16", "IVF4,Flat"])
def test_faiss_backend_on_approximate_indexes_keeps_the_contract(tmp_path: Path, factory: str) -> None:
    """HNSW cannot remove ids (the backend rebuilds from the stored vectors); a filter that few rows pass still
    gets exactly k hits (an exact fallback when the approximate search misses some)."""
    backend = FaissBackend(DIM, fields=FIELDS, path=tmp_path / "rows.faiss", factory=factory)
    ids, vectors, cols = rows(400, seed=8)
    backend.upsert(ids, vectors, cols)
    backend.upsert(ids[:5], vectors[5:10], {n: c[5:10] for n, c in cols.items()})  # overwrite 5 rows
    backend.delete(ids[10:20])
    assert backend.count() == 390
    cols = {n: c.copy() for n, c in cols.items()}
    cols["category"][:] = 0
    rare = np.arange(30, 400, 40)  # 10 rows
    cols["category"][rare] = 9
    backend.upsert(ids[rare], vectors[rare], {n: c[rare] for n, c in cols.items()})
    q = normalize(np.random.default_rng(3).standard_normal((6, DIM)))
    scores, got = backend.search(q, 10, Filter.eq("category", 9))
    assert (got >= 0).all() and set(got.ravel().tolist()) <= set(ids[rare].tolist())
    want = numpy_search(ids[rare], vectors[rare], q, 10)
    assert_same_hits((scores, got), want)
    backend.flush()
    assert FaissBackend(DIM, fields=FIELDS, path=tmp_path / "rows.faiss", factory=factory).count() == 390
