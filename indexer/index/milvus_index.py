"""Index segments in Milvus: each segment's payload is a collection of its own, named by the segment's record
(see ``unibind.indexer.index.places``).

A segment is registered before its collection is created and uploaded, so a collection that no record names is
debris (what a killed write left) that the next write drops; a dropped segment's collection stays while a reader
may still search it and goes with the vacuum. The choice rests on the records alone, not on clocks. Collection
names: ``ub_<store id, 12 hex>_<index slug>_<13-digit ms timestamp>_<8 hex>``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid

from collections.abc import Mapping

import numpy as np

from unibind.indexer.index.backend import Filter

from unibind.indexer.index.milvus_backend import INDEX_PARAMS, INDEX_TYPES, READ_BATCH, MilvusBackend
from unibind.schema.settings import VectorsSpec
from unibind.indexer.index.places import MILVUS_PREFIX, IndexName, IndexPlace, Written, content_digest
from unibind.indexer.index.vector_store import VectorStore
from unibind.indexer.runtime.device import Device
from unibind.schema import Segment
from unibind.schema.errors import Conflict, InvalidInput

log = logging.getLogger(__name__)

DEFAULT_TYPE = "FLAT"  # exact: what recognition and filtered search need to be exact
_SUFFIX = re.compile(r"_(\d{13})_[0-9a-f]{8}")


def collection_prefix(store_id: str) -> str:
    """What names every collection of one store: ``ub_`` and the store id's first 12 hex digits."""
    return f"ub_{store_id.replace('-', '')[:12]}_"


class MilvusIndex:
    """One published collection, searched as readers search a FAISS :class:`VectorStore`."""

    def __init__(self, backend: MilvusBackend, factory: str, n_vectors: int) -> None:
        self.backend, self.factory, self._n = backend, factory, int(n_vectors)

    @property
    def dim(self) -> int:
        return self.backend.dim

    @property
    def ntotal(self) -> int:
        """The recorded count (checked against the collection when it was opened)."""
        return self._n

    @property
    def is_ivf(self) -> bool:
        return False  # Milvus IVF types probe their own default (milvus_backend.NPROBE); --nprobe overrides it

    def tune(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """``nprobe`` for IVF_* collections, ``ef_search`` for HNSW ones (as FAISS: the wrong one is refused)."""
        if nprobe is not None:
            if not self.factory.startswith("IVF"):
                raise InvalidInput(f"--nprobe applies to IVF indexes; this Milvus collection is {self.factory}")
            if nprobe < 1:
                raise InvalidInput(f"nprobe must be >= 1, got {nprobe}")
            self.backend.nprobe = nprobe
        if ef_search is not None:
            if self.factory != "HNSW":
                raise InvalidInput(f"--ef-search applies to HNSW indexes; this Milvus collection is {self.factory}")
            if ef_search < 1:
                raise InvalidInput(f"ef_search must be >= 1, got {ef_search}")
            self.backend.ef = ef_search

    def ids(self) -> np.ndarray:
        return self.backend.ids()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.backend.search(queries, k)

    def search_subset(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.backend.search_keys(queries, k, allowed)

    @property
    def fields(self) -> dict[str, str]:
        """The scalar columns of the collection (``search_filtered`` filters on them in Milvus)."""
        return self.backend.fields

    def search_filtered(self, queries: np.ndarray, k: int, filter: Filter) -> tuple[np.ndarray, np.ndarray]:
        """Like ``search``, among the rows whose scalar columns pass ``filter`` (evaluated by Milvus; exact on
        FLAT: exactly min(k, rows passing) hits)."""
        return self.backend.search(queries, k, filter)


class MilvusPlace(IndexPlace):
    """The collections of one store at one Milvus (milvus-lite folder or server)."""

    keeps_fields = True

    def __init__(self, spec: VectorsSpec, store_id: str, fields: Mapping[str, str]) -> None:
        assert spec.uri is not None
        self.fields = dict(fields)  # every collection of this index carries these scalar columns
        self.spec, self.uri = spec, spec.uri
        self.prefix = collection_prefix(store_id)
        self.label = f"Milvus at {'milvus-lite:' if spec.kind == 'milvus-lite' else ''}{spec.uri}"
        self._open: dict[str, MilvusBackend] = {}
        self._lock = threading.Lock()

    # -- names -----------------------------------------------------------------------------------------------
    def _collection(self, stored: str) -> str:
        return stored[len(MILVUS_PREFIX):]

    def owns(self, stored: str) -> bool:
        return stored.startswith(MILVUS_PREFIX)

    def _versions(self, slug: str) -> list[str]:
        """The collections of the index ``slug`` (s<space>_descriptions, s<space>_items<modality>) at this Milvus."""
        head = f"{self.prefix}{slug}"
        return [name for name in self._any().collections(head) if _SUFFIX.fullmatch(name[len(head):])]

    # -- backends --------------------------------------------------------------------------------------------
    def _backend(self, collection: str, dim: int, index: str = DEFAULT_TYPE, create: bool = False) -> MilvusBackend:
        with self._lock:
            b = self._open.get(collection)
            if b is None or b.client is None:
                b = self._open[collection] = MilvusBackend(self.uri, collection, dim, index=index, create=create,
                                                           fields=self.fields, shared=True)
            return b

    def _any(self) -> MilvusBackend:
        """A connection for calls that name no collection of ours (listing, dropping)."""
        with self._lock:
            for b in self._open.values():
                if b.client is not None:
                    return b
            b = self._open.get("")
            if b is None or b.client is None:
                b = self._open[""] = MilvusBackend(self.uri, None, 1, shared=True)
            return b

    # -- the place -------------------------------------------------------------------------------------------
    def check_factory(self, factory: str | None, current: str | None) -> str:
        if factory:
            kind = factory.strip().upper()
            if kind not in INDEX_TYPES:
                raise InvalidInput(f"--factory {factory!r}: a Milvus index type is one of {', '.join(INDEX_TYPES)} "
                                   "(FAISS factory strings apply to FAISS files)")
            return kind
        return current or DEFAULT_TYPE

    def memory_factory(self, factory: str) -> str:
        return "Flat"  # the writer's copy is exact and flat; the collection's own index is ``factory``

    def segment_factory(self, factory: str, dim: int, n: int) -> str:
        nlist = INDEX_PARAMS.get(factory, {}).get("nlist")
        return DEFAULT_TYPE if nlist is not None and n < 39 * nlist else factory

    def new_path(self, index: IndexName) -> str:
        return f"{MILVUS_PREFIX}{self.prefix}{index.slug}_{int(time.time() * 1000):013d}_{uuid.uuid4().hex[:8]}"

    def write(self, path: str, store: VectorStore, factory: str, ids: np.ndarray,
              columns: Mapping[str, np.ndarray] | None = None) -> Written:
        name = self._collection(path)
        vectors = store.vectors_of(ids) if ids.size else np.empty((0, store.dim), np.float32)
        backend = self._backend(name, store.dim, factory, create=True)
        backend.upsert(ids, vectors, columns or {})
        backend.flush()
        n = backend.count()
        if n != ids.size:
            raise Conflict(f"Milvus collection {name} holds {n} rows after uploading {ids.size}")
        log.info("uploaded %d vectors to Milvus collection %s (%s)", ids.size, name, backend.index)
        return Written(path, content_digest(ids, vectors), int(vectors.nbytes))

    def _opened(self, rec: Segment, dim: int, factory: str = DEFAULT_TYPE) -> MilvusBackend:
        """The collection ``rec`` names (Conflict when it is missing, or has another dimension or columns)."""
        return self._backend(self._collection(rec.path), dim, factory)

    def open(self, rec: Segment, dim: int, device: Device, factory: str) -> MilvusIndex:
        return MilvusIndex(self._opened(rec, dim, factory), factory, rec.n_vectors)

    def problems(self, rec: Segment, dim: int) -> list[str]:
        try:
            n = self._opened(rec, dim).count()
        except Conflict as e:
            return [str(e)]
        return [f"Milvus collection {self._collection(rec.path)} holds {n} vectors, the record says {rec.n_vectors}"
                ] if n != rec.n_vectors else []

    def contents(self, rec: Segment, dim: int, device: Device, factory: str) -> tuple[np.ndarray | None, list[str]]:
        """Every key and vector read back: the keys, and whether their digest is the one recorded at upload."""
        try:
            backend = self._opened(rec, dim, factory)
        except Conflict:
            return None, []  # problems() said so
        ids = backend.ids()
        problems = []
        parts = [backend.vectors(ids[s : s + READ_BATCH])[1] for s in range(0, ids.size, READ_BATCH)]
        vectors = np.concatenate(parts) if parts else np.empty((0, dim), np.float32)
        if content_digest(ids, vectors) != rec.file_sha256:
            problems.append(f"Milvus collection {self._collection(rec.path)}: its vectors differ from those uploaded "
                            "when it was written")
        return ids, problems

    def listing(self, index: IndexName) -> list[tuple[str, str]]:
        """The collections of the index here, uploaded or being uploaded."""
        return [(name, MILVUS_PREFIX + name) for name in self._versions(index.slug)]

    def remove(self, names: list[str]) -> None:
        for name in names:
            with self._lock:
                self._open.pop(name, None)  # a reader still holding it gets Milvus's "not found" as a Conflict
            self._any().drop_collection(name)

    def describe(self, rec: Segment | None) -> str:
        return f"{self.label} collection {self._collection(rec.path)}" if rec is not None else f"{self.label}: nothing yet"
