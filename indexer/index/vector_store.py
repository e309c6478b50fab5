"""A FAISS index whose ids are primary keys: build, train, add, remove, search, atomic save/load.

The CPU index is the one that is mutated and saved; when the Device names a FAISS GPU, searches run
on a GPU replica made from it (fp16 storage optional). Index types the GPU cannot hold stay on CPU.
"""

from __future__ import annotations

import functools

import logging
from pathlib import Path

from unibind.indexer.runtime.faiss_lib import faiss
import numpy as np

from unibind.indexer.index.files import write_atomically
from unibind.indexer.runtime.device import Device
from unibind.schema.errors import Conflict, InvalidInput

log = logging.getLogger(__name__)

DEFAULT_FACTORY = "Flat"
GPU_MAX_K = 2048  # FAISS GPU searches return at most this many neighbours


def _is_ivf(index: faiss.Index) -> bool:
    try:
        faiss.extract_index_ivf(index)
        return True
    except RuntimeError:
        return False


def make_index(dim: int, factory: str = DEFAULT_FACTORY) -> faiss.Index:
    """An empty inner-product index from a FAISS factory string, able to take explicit ids."""
    if dim < 1:
        raise InvalidInput(f"index dimension must be >= 1, got {dim}")
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise InvalidInput(f"FAISS factory string {factory!r} is not valid: {str(e).strip().splitlines()[-1]}") from e
    if not factory.startswith("IDMap") and not _is_ivf(index):
        index = faiss.IndexIDMap2(index)  # flat, HNSW, PQ, ...: ids live in the map
    return index


_GPU_RESOURCES: list[faiss.StandardGpuResources] = []


def _gpu_resources() -> faiss.StandardGpuResources:
    """One set of FAISS GPU resources (temporary memory, streams) per process, shared by every replica: an index
    of many segments holds one replica per segment."""
    if not _GPU_RESOURCES:
        _GPU_RESOURCES.append(faiss.StandardGpuResources())
    return _GPU_RESOURCES[0]


@functools.lru_cache(maxsize=None)
def training_size(dim: int, factory: str) -> int:
    """How many vectors an index of type ``factory`` needs to be trained well: 39 per IVF list (FAISS warns below
    that), 39 × 256 for a PQ or other trained type without lists; 0 for types that need no training (flat, HNSW)."""
    index = make_index(dim, factory)
    if index.is_trained:
        return 0
    ivf = faiss.extract_index_ivf(index) if _is_ivf(index) else None
    return 39 * (ivf.nlist if ivf is not None else 256)


class VectorStore:
    """One FAISS index of unit vectors under int64 ids (inner product = cosine)."""

    def __init__(self, index: faiss.Index, factory: str, device: Device) -> None:
        self.index = index
        self.factory = factory
        self.device = device
        self._replica: faiss.Index | None = None
        self._gpu_resources = None

    @classmethod
    def create(cls, dim: int, device: Device, factory: str = DEFAULT_FACTORY) -> VectorStore:
        return cls(make_index(dim, factory), factory, device)

    @classmethod
    def from_vectors(cls, dim: int, device: Device, factory: str, ids: np.ndarray, vectors: np.ndarray) -> VectorStore:
        """A new index of ``factory`` holding ``vectors`` under ``ids`` (trained on them when its type needs it)."""
        store = cls.create(dim, device, factory)
        if len(ids):
            store.train(vectors)
            store.add(ids, vectors)
        return store

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def _inner(self) -> faiss.Index:
        return faiss.downcast_index(self.index.index) if isinstance(self.index, faiss.IndexIDMap) else self.index

    @property
    def is_ivf(self) -> bool:
        return _is_ivf(self._inner())

    def tune(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Search-time settings: the IVF lists probed per query, the HNSW candidate list size."""
        inner = self._inner()
        if nprobe is not None:
            if not _is_ivf(inner):
                raise InvalidInput(f"--nprobe applies to IVF indexes; this index is {self.factory!r}")
            if nprobe < 1:
                raise InvalidInput(f"nprobe must be >= 1, got {nprobe}")
            ivf = faiss.extract_index_ivf(inner)
            ivf.nprobe = min(nprobe, ivf.nlist)
        if ef_search is not None:
            if not isinstance(inner, faiss.IndexHNSW):
                raise InvalidInput(f"--ef-search applies to HNSW indexes; this index is {self.factory!r}")
            if ef_search < 1:
                raise InvalidInput(f"ef_search must be >= 1, got {ef_search}")
            inner.hnsw.efSearch = ef_search
        self._replica = None

    def _check(self, ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise InvalidInput(f"vectors of shape {vectors.shape} do not fit an index of dimension {self.dim}")
        if ids.shape != (vectors.shape[0],):
            raise ValueError(f"{ids.shape[0]} ids for {vectors.shape[0]} vectors")
        return ids, vectors

    def train(self, vectors: np.ndarray) -> None:
        """Train the index (IVF, PQ, ...) when its type needs it; a no-op for flat indexes."""
        if self.index.is_trained:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ivf = faiss.extract_index_ivf(self.index) if _is_ivf(self.index) else None
        need = ivf.nlist if ivf is not None else 1
        if vectors.shape[0] < need:
            raise InvalidInput(
                f"FAISS index {self.factory!r} needs at least {need} vectors to train, got {vectors.shape[0]}; "
                "use a smaller nlist or the flat index"
            )
        log.info("training %s on %d vectors", self.factory, vectors.shape[0])
        try:
            self.index.train(vectors)
        except RuntimeError as e:
            raise InvalidInput(
                f"FAISS index {self.factory!r} cannot be trained on {vectors.shape[0]} vectors: "
                f"{str(e).strip().splitlines()[-1]}"
            ) from e

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = self._check(ids, vectors)
        if not len(ids):
            return
        if not self.index.is_trained:
            self.train(vectors)
        self.index.add_with_ids(vectors, ids)
        self._replica = None

    def remove(self, ids: np.ndarray) -> bool:
        """Remove ids; False when this index type cannot remove (the caller rebuilds instead)."""
        try:
            self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))
        except RuntimeError as e:
            log.info("%s cannot remove ids (%s); a rebuild is needed", self.factory, str(e).strip().splitlines()[-1])
            return False
        self._replica = None
        return True

    def ids(self) -> np.ndarray:
        """Every id the index holds (unordered)."""
        if isinstance(self.index, faiss.IndexIDMap):  # IndexIDMap2 is a subclass
            return faiss.vector_to_array(self.index.id_map).astype(np.int64)
        index = faiss.downcast_index(self.index)
        if isinstance(index, faiss.IndexIDMap):
            return faiss.vector_to_array(index.id_map).astype(np.int64)
        ivf = faiss.extract_index_ivf(self.index)
        invlists = ivf.invlists
        parts = [
            faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
            for i in range(ivf.nlist)
            if invlists.list_size(i)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, dtype=np.int64)

    def vectors_of(self, keys: np.ndarray) -> np.ndarray:
        """[n, d] stored vectors of ``keys`` (all present; IVF: through a temporary id → entry hash map)."""
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        if not self.is_ivf:
            return self.index.reconstruct_batch(keys)  # IndexIDMap2 maps keys to entries
        ivf = faiss.extract_index_ivf(self.index)
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        try:
            return ivf.reconstruct_batch(keys)
        finally:
            ivf.set_direct_map_type(faiss.DirectMap.NoMap)

    def _searcher(self) -> faiss.Index:
        if self.device.faiss_gpu is None:
            return self.index
        if self._replica is None:
            try:
                if self._gpu_resources is None:
                    self._gpu_resources = _gpu_resources()
                options = faiss.GpuClonerOptions()
                options.useFloat16 = self.device.faiss_fp16
                self._replica = faiss.index_cpu_to_gpu(self._gpu_resources, self.device.faiss_gpu, self.index, options)
            except (RuntimeError, AttributeError) as e:
                log.warning("FAISS index %s stays on CPU: no GPU version (%s)", self.factory, e)
                self._replica = self.index
        return self._replica

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """[B, d] unit queries → (scores [B, k], ids [B, k]); missing neighbours have id -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise InvalidInput(f"queries of shape {queries.shape} do not fit an index of dimension {self.dim}")
        if k < 1:
            raise InvalidInput(f"k must be >= 1, got {k}")
        if self.device.faiss_gpu is not None and k > GPU_MAX_K:
            return self.index.search(queries, k)  # GPU searches return at most GPU_MAX_K neighbours
        return self._searcher().search(queries, k)

    def _selector_params(self, selector: faiss.IDSelector) -> faiss.SearchParameters:
        """Search parameters carrying ``selector``, of the type the index needs, keeping its settings."""
        inner = self._inner()
        if _is_ivf(inner):
            return faiss.SearchParametersIVF(sel=selector, nprobe=faiss.extract_index_ivf(inner).nprobe)
        if isinstance(inner, faiss.IndexHNSW):
            return faiss.SearchParametersHNSW(sel=selector, efSearch=inner.hnsw.efSearch)
        return faiss.SearchParameters(sel=selector)

    def _search_selected(self, queries: np.ndarray, k: int, selector: faiss.IDSelector) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise InvalidInput(f"queries of shape {queries.shape} do not fit an index of dimension {self.dim}")
        if k < 1:
            raise InvalidInput(f"k must be >= 1, got {k}")
        return self.index.search(queries, k, params=self._selector_params(selector))

    def search_subset(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Like ``search``, among the ids in ``allowed`` only (a FAISS ID selector, on the CPU index).

        Exact for flat indexes; approximate indexes (IVF, HNSW) may return fewer than k hits (id -1) when few
        ids pass: callers that need exactly k fall back to an exact search over the allowed vectors.
        """
        allowed = np.ascontiguousarray(allowed, dtype=np.int64)
        return self._search_selected(queries, k, faiss.IDSelectorBatch(allowed.size, faiss.swig_ptr(allowed)))

    @staticmethod
    def excluding(ids: np.ndarray) -> faiss.IDSelector:
        """A selector that leaves out ``ids`` (read-only: threads may share it). It keeps its own copy of them."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        batch = faiss.IDSelectorBatch(ids.size, faiss.swig_ptr(ids))  # copies the ids into its own set
        return faiss.IDSelectorNot(batch)  # holds a reference to ``batch``

    def search_excluding(self, queries: np.ndarray, k: int, excluded: faiss.IDSelector) -> tuple[np.ndarray, np.ndarray]:
        """Like ``search``, leaving out the ids an :meth:`excluding` selector names (a segment's tombstones; on the
        CPU index)."""
        return self._search_selected(queries, k, excluded)

    def save(self, path: Path) -> tuple[str, int]:
        """Write atomically (:func:`~unibind.indexer.index.files.write_atomically`: the rename is durable when
        this returns, so the caller may record the file). Returns (sha256, size)."""
        return write_atomically(Path(path), lambda tmp: faiss.write_index(self.index, str(tmp)))

    @classmethod
    def load(cls, path: Path, device: Device, factory: str) -> VectorStore:
        if not path.is_file():
            raise FileNotFoundError(f"FAISS index file not found: {path}")
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as e:
            raise Conflict(f"{path}: not a readable FAISS index ({str(e).strip().splitlines()[-1]})") from e
        return cls(index, factory, device)
