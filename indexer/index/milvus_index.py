"""Index segments in Milvus: each index (a space's descriptions, a modality's gallery) is one long-lived
*segmented* collection per index type, ``ub_<store id, 12 hex>_<index slug>_<type>`` (``..._s1_descriptions_flat``),
created by the first write and kept; a segment's payload is the rows of that collection whose ``seg`` column holds
the segment's token. The segment's record path names both: ``milvus:<collection>#<token>``.

- A write inserts only its new rows under a fresh token (its record registered first, state ``building``), then
  publishes the record; nothing reads the index's other vectors back. On milvus-lite the rows are flushed first
  (they are durable only then); a server has acknowledged them.
- A reader searches ``seg in [the tokens of its catalog version]`` (``MilvusIndex.union``: one Milvus search for all
  the segments of a version), so the rows of an unpublished write, or of segments dropped since, are never seen;
  rows tombstoned at its version are over-fetched past and left out.
- Removing a segment (the vacuum, once no reader can search it; a failed or killed write) deletes its rows by
  ``seg == token`` *before* its record goes, so rows that no record names cannot outlive a crash; a collection
  that no record names (the old type after a rebuild to another one) is dropped.
- A rebuild to another index type (``--factory``) fills a new collection of that type; readers move with the
  record flip, and the old collection goes with the vacuum.

Collections of the earlier layout (one per segment, ``ub_<store>_<slug>_<13-digit ms>_<8 hex>``) are still read,
and go as their segments are merged or rebuilt.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading

from collections.abc import Mapping

import numpy as np

from unibind.indexer.index.backend import Filter

from unibind.indexer.index.milvus_backend import INDEX_PARAMS, INDEX_TYPES, READ_BATCH, MilvusBackend, index_params
from unibind.schema.settings import MilvusOptions, VectorsSpec
from unibind.indexer.index.places import MILVUS_PREFIX, IndexName, IndexPlace, Written, content_digest
from unibind.indexer.index.vector_store import VectorStore
from unibind.indexer.runtime.device import Device
from unibind.schema import Segment
from unibind.schema.errors import Conflict, InvalidInput

from tqdm.auto import tqdm

log = logging.getLogger(__name__)
PROGRESS_ABOVE = 50_000  # rows: an insert this large shows a progress bar

DEFAULT_TYPE = "FLAT"  # exact: what recognition and filtered search need to be exact
_SUFFIX = re.compile(r"_(\d{13})_[0-9a-f]{8}")  # a collection of the earlier layout (one per segment)
_TYPED = {f"_{t.lower()}": t for t in INDEX_TYPES}  # the suffix of an index's collection of one type
TOKEN_BITS = 62


def split_path(stored: str) -> tuple[str, int | None]:
    """``milvus:<collection>#<token>`` → (collection, token); a path of the earlier layout → (collection, None)."""
    name = stored[len(MILVUS_PREFIX):]
    if "#" in name:
        collection, token = name.split("#", 1)
        return collection, (int(token) if token.isdigit() else None)
    return name, None


def scope_of(tokens: tuple[int, ...]) -> str:
    """The Milvus expression selecting the rows of segments ``tokens``."""
    return f"seg == {tokens[0]}" if len(tokens) == 1 else f"seg in [{', '.join(map(str, tokens))}]"


def collection_prefix(store_id: str) -> str:
    """What names every collection of one store: ``ub_`` and the store id's first 12 hex digits."""
    return f"ub_{store_id.replace('-', '')[:12]}_"


class MilvusIndex:
    """One published collection, searched as readers search a FAISS :class:`VectorStore`."""

    def __init__(self, backend: MilvusBackend, factory: str, n_vectors: int, tokens: tuple[int, ...] | None = None
                 ) -> None:
        self.backend, self.factory, self._n = backend, factory, int(n_vectors)
        self.tokens = tokens  # the segments of a segmented collection it holds (None: a whole collection)
        self.scope = scope_of(tokens) if tokens else ""

    @classmethod
    def union(cls, parts: list[MilvusIndex]) -> MilvusIndex:
        """The segments of several ``parts`` of one segmented collection, searched as one."""
        tokens = tuple(t for p in parts for t in (p.tokens or ()))
        return cls(parts[0].backend, parts[0].factory, sum(p.ntotal for p in parts), tokens)

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
        return self.backend.ids(self.scope)

    def vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.backend.vectors(ids, self.scope)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.backend.search(queries, k, scope=self.scope)

    def search_subset(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.backend.search_keys(queries, k, allowed, self.scope)

    @property
    def fields(self) -> dict[str, str]:
        """The scalar columns of the collection (``search_filtered`` filters on them in Milvus)."""
        return self.backend.fields

    def search_filtered(self, queries: np.ndarray, k: int, filter: Filter) -> tuple[np.ndarray, np.ndarray]:
        """Like ``search``, among the rows whose scalar columns pass ``filter`` (evaluated by Milvus; exact on
        FLAT: exactly min(k, rows passing) hits)."""
        return self.backend.search(queries, k, filter, self.scope)


class MilvusPlace(IndexPlace):
    """The collections of one store at one Milvus (milvus-lite folder or server)."""

    keeps_fields = True

    def __init__(self, spec: VectorsSpec, store_id: str, fields: Mapping[str, str]) -> None:
        assert spec.uri is not None
        self.fields = dict(fields)  # every collection of this index carries these scalar columns
        self.options = MilvusOptions.from_env()
        self.spec, self.uri = spec, self.options.server_uri(spec.uri) if spec.kind == "milvus" else spec.uri
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
        """The collections of the index ``slug`` (s<space>_descriptions, s<space>_items<modality>) at this Milvus:
        one per index type, and those of the earlier layout."""
        head = f"{self.prefix}{slug}"
        return [name for name in self._any().collections(head)
                if _SUFFIX.fullmatch(name[len(head):]) or name[len(head):] in _TYPED]

    def collection_of(self, index: IndexName, factory: str) -> str:
        """The segmented collection holding the segments of type ``factory`` of the index ``index``."""
        return f"{self.prefix}{index.slug}_{factory.lower()}"

    # -- backends --------------------------------------------------------------------------------------------
    def _backend(self, collection: str, dim: int, index: str = DEFAULT_TYPE, create: bool = False,
                 segmented: bool = True, rows: int = 0) -> MilvusBackend:
        with self._lock:
            b = self._open.get(collection)
            if b is None or b.client is None:
                params = index_params(index, rows, nlist=self.options.nlist, hnsw_m=self.options.hnsw_m,
                                      hnsw_ef_construction=self.options.hnsw_ef_construction)
                b = self._open[collection] = MilvusBackend(
                    self.uri, collection, dim, index=index, create=create, fields=self.fields, shared=True,
                    segmented=segmented, params=params if segmented else None, connection=self.options.connection())
            return b

    def _any(self) -> MilvusBackend:
        """A connection for calls that name no collection of ours (listing, dropping)."""
        with self._lock:
            for b in self._open.values():
                if b.client is not None:
                    return b
            b = self._open.get("")
            if b is None or b.client is None:
                b = self._open[""] = MilvusBackend(self.uri, None, 1, shared=True, connection=self.options.connection())
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
        return factory  # every segment of a type lives in its collection; Milvus indexes its sealed parts itself

    def legacy_factory(self, factory: str, n: int) -> str:
        """The type a collection of the earlier layout was built as (a small one flat)."""
        nlist = INDEX_PARAMS.get(factory, {}).get("nlist")
        return DEFAULT_TYPE if nlist is not None and n < 39 * nlist else factory

    def new_path(self, index: IndexName, factory: str = DEFAULT_TYPE) -> str:
        return f"{MILVUS_PREFIX}{self.collection_of(index, factory)}#{secrets.randbits(TOKEN_BITS)}"

    def write(self, path: str, store: VectorStore, factory: str, ids: np.ndarray,
              columns: Mapping[str, np.ndarray] | None = None) -> Written:
        name, token = split_path(path)
        if token is None:
            raise InvalidInput(f"{path!r} names no segment of a segmented Milvus collection")
        vectors = store.vectors_of(ids) if ids.size else np.empty((0, store.dim), np.float32)
        backend = self._backend(name, store.dim, factory, create=True, rows=int(ids.size))
        with tqdm(total=int(ids.size), desc=f"insert into {name}", unit="vec", leave=False,
                  disable=ids.size < PROGRESS_ABOVE) as bar:
            backend.insert(ids, vectors, columns or {}, seg=token, progress=bar.update)
        if backend.is_lite:
            backend.flush()  # milvus-lite keeps unflushed rows in memory only
        n = backend.count(scope_of((token,)))
        if n != ids.size:
            raise Conflict(f"Milvus collection {name} holds {n} rows of segment {token} after inserting {ids.size}")
        log.info("inserted %d vectors into Milvus collection %s (%s)", ids.size, name, backend.index)
        return Written(path, content_digest(ids, vectors), int(vectors.nbytes))

    def _opened(self, rec: Segment, dim: int, factory: str = DEFAULT_TYPE) -> MilvusIndex:
        """The rows ``rec`` names (Conflict when the collection is missing, or has another dimension or columns)."""
        name, token = split_path(rec.path)
        if token is None:
            built = self.legacy_factory(factory, int(rec.n_vectors))
            return MilvusIndex(self._backend(name, dim, built, segmented=False), built, rec.n_vectors)
        return MilvusIndex(self._backend(name, dim, factory), factory, rec.n_vectors, (token,))

    def open(self, rec: Segment, dim: int, device: Device, factory: str) -> MilvusIndex:
        return self._opened(rec, dim, factory)

    def problems(self, rec: Segment, dim: int) -> list[str]:
        try:
            view = self._opened(rec, dim, rec.factory)
            n = view.backend.count(view.scope)
        except Conflict as e:
            return [str(e)]
        return [f"{self.describe(rec)} holds {n} vectors, the record says {rec.n_vectors}"] if n != rec.n_vectors else []

    def contents(self, rec: Segment, dim: int, device: Device, factory: str) -> tuple[np.ndarray | None, list[str]]:
        """Every key and vector read back: the keys, and whether their digest is the one recorded at upload."""
        try:
            view = self._opened(rec, dim, factory)
        except Conflict:
            return None, []  # problems() said so
        ids = view.ids()
        problems = []
        parts = [view.vectors(ids[s : s + READ_BATCH]) for s in range(0, ids.size, READ_BATCH)]
        keys = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, np.int64)
        vectors = np.concatenate([p[1] for p in parts]) if parts else np.empty((0, dim), np.float32)
        if ids.size != np.unique(ids).size or content_digest(keys, vectors) != rec.file_sha256:
            problems.append(f"{self.describe(rec)}: its rows differ from those inserted when it was written")
        return ids, problems

    def listing(self, index: IndexName) -> list[tuple[str, str]]:
        """The collections of the index here: a segmented one as ``milvus:<collection>#*`` (named while any record
        names one of its segments: see ``listing_key``), one of the earlier layout as its record path."""
        return [(name, MILVUS_PREFIX + name + ("#*" if "#" not in name and not _SUFFIX.search(name) else ""))
                for name in self._versions(index.slug)]

    def listing_key(self, path: str) -> str:
        name, token = split_path(path)
        return f"{MILVUS_PREFIX}{name}#*" if token is not None else path

    def remove(self, names: list[str]) -> None:
        """Drop whole collections (``listing`` gave them)."""
        for name in names:
            with self._lock:
                self._open.pop(name, None)  # a reader still holding it gets Milvus's "not found" as a Conflict
            self._any().drop_collection(name)

    def remove_recorded(self, index: IndexName, paths: list[str]) -> None:
        """Remove the payloads of segment records: a segment's rows (``seg == token``), or a collection of the
        earlier layout. Idempotent."""
        for path in paths:
            name, token = split_path(path)
            if token is None:
                self.remove([name])
            else:
                self._any().delete_in(name, scope_of((token,)))

    def describe(self, rec: Segment | None) -> str:
        if rec is None:
            return f"{self.label}: nothing yet"
        name, token = split_path(rec.path)
        return f"{self.label} collection {name}" + (f" segment {token}" if token is not None else "")
