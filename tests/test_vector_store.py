"""The FAISS wrapper against an exact NumPy brute force, for several factory strings."""

from __future__ import annotations

from pathlib import Path

from unibind.indexer.runtime.faiss_lib import faiss
import numpy as np
import pytest

from unibind.indexer.runtime.device import Device
from unibind.indexer.index.exact import exact_knn
from unibind.indexer.index.files import sha256_file, write_atomically
from unibind.indexer.index.vector_store import VectorStore, make_index
from unibind.indexer.runtime.vectors import normalize
from unibind.schema.errors import Conflict, InvalidInput


def brute_force(x: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = q @ x.T  # [B, N]
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, axis=1), ids[order]


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = normalize(rng.standard_normal((500, 24)))
    ids = rng.choice(10**9, size=500, replace=False).astype(np.int64)  # ids are primary keys, not positions
    q = normalize(rng.standard_normal((9, 24)))
    return x, ids, q


@pytest.mark.parametrize("factory", ["Flat", "IDMap2,Flat", "IVF4,Flat", "HNSW16"])
def test_search_equals_brute_force(factory: str, data, cpu: Device) -> None:  # type: ignore[no-untyped-def]
    x, ids, q = data
    store = VectorStore.create(24, cpu, factory)
    store.add(ids, x)
    if factory.startswith("IVF"):
        faiss.extract_index_ivf(store.index).nprobe = 4  # all lists: exact
    if factory.startswith("HNSW"):
        faiss.downcast_index(store.index.index).hnsw.efSearch = 512
    scores, found = store.search(q, 10)
    ref_scores, ref_ids = brute_force(x, ids, q, 10)
    np.testing.assert_array_equal(found, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    assert sorted(store.ids()) == sorted(ids)


def test_remove_save_load_round_trip(data, cpu: Device, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    x, ids, q = data
    store = VectorStore.create(24, cpu)
    store.add(ids, x)
    assert store.remove(ids[:100])
    digest, size = store.save(tmp_path / "a.faiss")
    assert size == (tmp_path / "a.faiss").stat().st_size and len(digest) == 64
    assert [p.name for p in tmp_path.iterdir()] == ["a.faiss"]  # no temp file left behind
    loaded = VectorStore.load(tmp_path / "a.faiss", cpu, "Flat")
    assert loaded.ntotal == 400
    scores, found = loaded.search(q, 5)
    ref_scores, ref_ids = brute_force(x[100:], ids[100:], q, 5)
    np.testing.assert_array_equal(found, ref_ids)


def test_hnsw_cannot_remove_and_says_so(data, cpu: Device) -> None:  # type: ignore[no-untyped-def]
    x, ids, _ = data
    store = VectorStore.create(24, cpu, "HNSW16")
    store.add(ids, x)
    assert store.remove(ids[:3]) is False
    assert store.ntotal == 500


def test_bad_inputs(cpu: Device, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="factory string 'Bogus42' is not valid"):
        make_index(8, "Bogus42")
    store = VectorStore.create(8, cpu, "IVF64,Flat")
    with pytest.raises(ValueError, match="needs at least 64 vectors to train, got 10"):
        store.add(np.arange(10), normalize(np.ones((10, 8))))
    flat = VectorStore.create(8, cpu)
    with pytest.raises(InvalidInput, match="do not fit an index of dimension 8"):  # a dimension mismatch
        flat.add(np.arange(2), np.ones((2, 5), dtype=np.float32))
    with pytest.raises(InvalidInput, match="k must be >= 1"):
        flat.search(normalize(np.ones((1, 8))), 0)
    (tmp_path / "junk.faiss").write_bytes(b"not an index")
    with pytest.raises(Conflict, match="junk.faiss: not a readable FAISS index"):  # a recorded file gone bad
        VectorStore.load(tmp_path / "junk.faiss", cpu, "Flat")
    with pytest.raises(FileNotFoundError, match="missing.faiss"):
        VectorStore.load(tmp_path / "missing.faiss", cpu, "Flat")


@pytest.mark.gpu
def test_gpu_replica_matches_cpu(data) -> None:  # type: ignore[no-untyped-def]
    from unibind.indexer.runtime.device import select_device

    device = select_device("auto")
    if device.faiss_gpu is None:
        pytest.skip("faiss sees no GPU")
    x, ids, q = data
    store = VectorStore.create(24, device)
    store.add(ids, x)
    scores, found = store.search(q, 10)
    ref_scores, ref_ids = brute_force(x, ids, q, 10)
    np.testing.assert_array_equal(found, ref_ids)


@pytest.mark.parametrize("k", [1, 10, 500, 800])
def test_exact_knn_equals_brute_force(data, k: int) -> None:  # type: ignore[no-untyped-def]
    """The library's exact reference (the filtered search's fallback) against float64 NumPy."""
    x, ids, q = data
    scores, found = exact_knn(q, ids, x, k)
    ref_scores, ref_ids = brute_force(x.astype(np.float64), ids, q.astype(np.float64), min(k, len(ids)))
    assert found.shape == (len(q), min(k, len(ids)))
    np.testing.assert_array_equal(found, ref_ids)  # random unit vectors: no ties
    np.testing.assert_allclose(scores, ref_scores, atol=1e-6)


def test_write_atomically_replaces_whole_files_only(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.bin"
    digest, size = write_atomically(target, lambda tmp: tmp.write_bytes(b"first"))
    assert target.read_bytes() == b"first" and size == 5 and digest == sha256_file(target)

    def broken(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, broken)
    assert target.read_bytes() == b"first"  # the old file stands
    assert [p.name for p in target.parent.iterdir()] == ["f.bin"]  # no temporary file left behind
