"""Index segments in Milvus: one long-lived collection per index and index type holds the rows of all its segments,
each row tagged with its segment's token (see ``unibind.indexer.index.places`` for what a segment is).

A segment's record path is ``milvus:<collection>#<token>``; the collection is named
``ub_<store id, 12 hex>_<index slug>_<type>_<8 hex>``, e.g. ``ub_1f0c…_s1_descriptions_flat_9a3e01c2``, with an
automatic primary key, the row ``key``, the segment token ``seg`` (a scalar index: INVERTED, or STL_SORT on Milvus 2.3)
and the row's scalar fields.

* A write inserts only its own rows, under a fresh token, into the index's current collection of its type (a
  new index, or ``index rebuild``, makes a new collection: its IVF lists are sized for the rows it starts with).
  Nothing reads the other rows back. Milvus's acknowledgement of the insert (its row count) is checked, and on
  milvus-lite the rows are flushed, before the record is published; ``index verify`` reads every key back.
* A reader at catalog version v searches ``seg in [the tokens of v's segments]``: one Milvus search per collection,
  so a half-inserted write (its token is in no published record) and rows of later versions are never seen. Every
  search and query runs at the Strong consistency level: it sees every insert and delete acknowledged before it.
* Removal of a segment deletes its rows (``seg == token``) *before* its record is forgotten (the vacuum, a discarded
  or reaped write), so no row outlives the record that names it and no listing of rows is ever needed; a collection
  that no record names any more (after a rebuild) is dropped by the next write's sweep.

Records of the earlier layout (one collection per segment, ``ub_<store>_<slug>_<13-digit ms>_<8 hex>``) stay readable
and go as they did: their collection is dropped.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import uuid

from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from unibind.indexer.index.backend import Filter

from unibind.indexer.index.milvus_backend import INDEX_TYPES, READ_BATCH, SEG, MilvusBackend, seg_scope
from unibind.schema.settings import VectorsSpec
from unibind.indexer.index.places import MILVUS_PREFIX, IndexName, IndexPlace, Written, content_digest
from unibind.indexer.index.vector_store import VectorStore
from unibind.indexer.runtime.device import Device
from unibind.schema import Segment
from unibind.schema.errors import Conflict, InvalidInput

log = logging.getLogger(__name__)

DEFAULT_TYPE = "FLAT"  # exact: what recognition and filtered search need to be exact
TOKEN_SEP = "#"
_LEGACY_SUFFIX = re.compile(r"_(\d{13})_[0-9a-f]{8}")
_SUFFIX = re.compile(r"_(" + "|".join(t.lower() for t in INDEX_TYPES) + r")_[0-9a-f]{8}")
LEGACY_NLIST = 128  # the fixed IVF lists of the earlier layout's collections
REMOVE_TOKENS = 1_000  # segment tokens per delete expression


def collection_prefix(store_id: str) -> str:
    """What names every collection of one store: ``ub_`` and the store id's first 12 hex digits."""
    return f"ub_{store_id.replace('-', '')[:12]}_"


def split_path(stored: str) -> tuple[str, int | None]:
    """A record path's collection and segment token (None: a collection of the earlier one-per-segment layout)."""
    name = stored[len(MILVUS_PREFIX):]
    if TOKEN_SEP not in name:
        return name, None
    name, token = name.split(TOKEN_SEP, 1)
    return name, int(token)


def collection_type(name: str) -> str | None:
    """The index type a segmented collection was made with (from its name), or None for another name."""
    m = _SUFFIX.search(name)
    return m.group(1).upper() if m and m.end() == len(name) else None


class MilvusIndex:
    """One published collection, searched as readers search a FAISS :class:`VectorStore`."""

    def __init__(self, backend: MilvusBackend, factory: str, n_vectors: int, tokens: Sequence[int] = ()) -> None:
        self.backend, self.factory, self._n = backend, factory, int(n_vectors)
        self.tokens = tuple(sorted(int(t) for t in tokens))  # the segments searched (none: the whole collection)
        self.scope = seg_scope(self.tokens) if self.tokens else ""

    @property
    def group_key(self) -> tuple[str, str] | None:
        """Segments of one segmented collection are searched together: (Milvus, collection), or None."""
        return (self.backend.uri, str(self.backend.collection)) if self.tokens else None

    @classmethod
    def union(cls, indexes: Sequence[MilvusIndex]) -> MilvusIndex:
        """The segments of several indexes of one collection, searched in one Milvus search (their row keys are
        distinct: a key is in one segment of a catalog version)."""
        first = indexes[0]
        return cls(first.backend, first.factory, sum(i.ntotal for i in indexes),
                   [t for i in indexes for t in i.tokens])

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
        """(keys, vectors) of those of ``ids`` these segments hold."""
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
    removes_first = True

    def __init__(self, spec: VectorsSpec, store_id: str, fields: Mapping[str, str]) -> None:
        assert spec.uri is not None
        self.fields = dict(fields)  # every collection of this index carries these scalar columns
        self.spec, self.uri = spec, spec.uri
        self.prefix = collection_prefix(store_id)
        self.label = f"Milvus at {'milvus-lite:' if spec.kind == 'milvus-lite' else ''}{spec.uri}"
        self._open: dict[str, MilvusBackend] = {}
        self._lock = threading.Lock()

    # -- names -----------------------------------------------------------------------------------------------
    def owns(self, stored: str) -> bool:
        return stored.startswith(MILVUS_PREFIX)

    def _collections(self, slug: str) -> list[str]:
        """The collections of the index ``slug`` (s<space>_descriptions, s<space>_items<modality>) at this Milvus:
        segmented ones and those of the earlier layout."""
        head = f"{self.prefix}{slug}"
        return [name for name in self._any().collections(head)
                if _SUFFIX.fullmatch(name[len(head):]) or _LEGACY_SUFFIX.fullmatch(name[len(head):])]

    def listing_key(self, stored: str) -> str:
        return MILVUS_PREFIX + split_path(stored)[0]

    def strays(self, index: IndexName, named: Callable[[], Sequence[str]]) -> list[str]:
        """Rows of the index's segmented collections whose token no record names (a write that failed in a way it
        could not clean up after): counted here; ``index rebuild`` leaves them behind in the old collection."""
        out = []
        names = [c for c in self._collections(index.slug) if collection_type(c) is not None]
        if not names:
            return []
        before = {split_path(p)[1] for p in named()}
        for name in names:
            backend = self._any()
            known = ", ".join(str(t) for t in sorted(t for t in before if t is not None)) or "-1"
            rows = backend._call("read tokens", backend.client.query, name, filter=f"{SEG} not in [{known}]",
                                 output_fields=[SEG], limit=READ_BATCH)
            found = Counter(int(r[SEG]) for r in rows)
            if not found:
                continue
            after = {split_path(p)[1] for p in named()}  # a writer that registered meanwhile is no stray
            stray = {t: n for t, n in found.items() if t not in after}
            if stray:
                out.append(f"Milvus collection {name} holds {sum(stray.values())}{'+' if len(rows) >= READ_BATCH else ''}"
                           f" rows of {len(stray)} segment token(s) that no record names")
        return out

    def shared_by(self, stored: str) -> str | None:
        """The record-path prefix of the other segments whose container ``stored`` shares (its collection), or None
        for a payload of its own."""
        name, token = split_path(stored)
        return None if token is None else f"{MILVUS_PREFIX}{name}{TOKEN_SEP}"

    # -- backends --------------------------------------------------------------------------------------------
    def _backend(self, collection: str, dim: int, index: str = DEFAULT_TYPE, create: bool = False,
                 segmented: bool = False, rows: int = 0) -> MilvusBackend:
        with self._lock:
            b = self._open.get(collection)
            if b is None or b.client is None:
                b = self._open[collection] = MilvusBackend(self.uri, collection, dim, index=index, create=create,
                                                           fields=self.fields, shared=True, segmented=segmented,
                                                           rows=rows)
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
        return factory  # the collection's type: Milvus indexes its own sealed segments and scans growing ones

    def new_path(self, index: IndexName, factory: str = DEFAULT_TYPE, current: Sequence[str] = (),
                 fresh: bool = False) -> str:
        """A new segment's path: a fresh token in the newest collection of type ``factory`` that ``current`` (the
        index's live segment paths, oldest first) uses, or in a new collection (none yet, or ``fresh``)."""
        token = secrets.randbits(62) or 1
        collection = None
        if not fresh:
            for stored in reversed(current):
                name, tok = split_path(stored)
                if tok is not None and collection_type(name) == factory and name.startswith(self.prefix + index.slug):
                    collection = name
                    break
        if collection is None:
            collection = f"{self.prefix}{index.slug}_{factory.lower()}_{uuid.uuid4().hex[:8]}"
        return f"{MILVUS_PREFIX}{collection}{TOKEN_SEP}{token}"

    def write(self, path: str, store: VectorStore, factory: str, ids: np.ndarray,
              columns: Mapping[str, np.ndarray] | None = None) -> Written:
        name, token = split_path(path)
        if token is None:
            raise Conflict(f"{path}: a new segment is written into a segmented collection")
        vectors = store.vectors_of(ids) if ids.size else np.empty((0, store.dim), np.float32)
        backend = self._backend(name, store.dim, factory, create=True, segmented=True, rows=int(ids.size))
        n = backend.insert_segment(token, ids, vectors, columns or {})
        if n != ids.size:
            raise Conflict(f"Milvus collection {name} acknowledged {n} rows of segment {token}, not {ids.size}")
        if self.spec.kind == "milvus-lite":
            backend.flush()  # milvus-lite keeps unflushed rows in memory only; a server's log makes them durable
        log.info("inserted %d vectors into Milvus collection %s as segment %d (%s)", ids.size, name, token,
                 backend.index)
        return Written(path, content_digest(ids, vectors), int(vectors.nbytes))

    def _opened(self, rec: Segment, dim: int, factory: str = DEFAULT_TYPE) -> tuple[MilvusBackend, str]:
        """The collection ``rec`` names and the filter of its rows (Conflict when it is missing, or has another
        dimension or columns)."""
        name, token = split_path(rec.path)
        if token is None:
            return self._backend(name, dim, _legacy_type(rec)), ""
        return self._backend(name, dim, collection_type(name) or factory, segmented=True), seg_scope([token])

    def open(self, rec: Segment, dim: int, device: Device, factory: str) -> MilvusIndex:
        backend, _ = self._opened(rec, dim, factory)
        token = split_path(rec.path)[1]
        return MilvusIndex(backend, backend.index, rec.n_vectors, () if token is None else (token,))

    def problems(self, rec: Segment, dim: int) -> list[str]:
        """The collection is there (with this dimension and columns); for a collection of the earlier layout, also
        its count. A segment's rows were counted by Milvus's acknowledgement of their insert; counting them again
        scans the collection, so only ``index verify`` (``contents``) reads them back."""
        try:
            backend, scope = self._opened(rec, dim)
            if scope:
                return []
            n = backend.count()
        except Conflict as e:
            return [str(e)]
        return [f"Milvus collection {backend.collection} holds {n} vectors of {self._what(rec)}, the record says "
                f"{rec.n_vectors}"] if n != rec.n_vectors else []

    def _what(self, rec: Segment) -> str:
        token = split_path(rec.path)[1]
        return "its segment" if token is None else f"segment {token}"

    def contents(self, rec: Segment, dim: int, device: Device, factory: str) -> tuple[np.ndarray | None, list[str]]:
        """Every key and vector of the segment read back: the keys, and whether their digest is the one recorded."""
        try:
            backend, scope = self._opened(rec, dim, factory)
        except Conflict:
            return None, []  # problems() said so
        ids = backend.ids(scope)
        problems = []
        parts = [backend.vectors(ids[s : s + READ_BATCH], scope)[1] for s in range(0, ids.size, READ_BATCH)]
        vectors = np.concatenate(parts) if parts else np.empty((0, dim), np.float32)
        if content_digest(ids, vectors) != rec.file_sha256:
            problems.append(f"Milvus collection {backend.collection}: the vectors of {self._what(rec)} differ from "
                            "those inserted when it was written")
        return ids, problems

    def listing(self, index: IndexName) -> list[tuple[str, str]]:
        """The collections of the index here (a collection is named by a record of any of its segments)."""
        return [(name, MILVUS_PREFIX + name) for name in self._collections(index.slug)]

    def remove(self, names: list[str]) -> None:
        """Drop whole collections (that no record names)."""
        for name in names:
            with self._lock:
                self._open.pop(name, None)  # a reader still holding it gets Milvus's "not found" as a Conflict
            self._any().drop_collection(name)

    def remove_recorded(self, paths: Sequence[str], index: IndexName, dim: int) -> None:
        """Remove the payloads of segment records: a segment's rows (by token, in bounded deletes), or the whole
        collection of a record of the earlier layout. Rows already gone are no error."""
        present = set(self._any().collections(self.prefix))
        tokens: dict[str, list[int]] = {}
        for stored in paths:
            name, token = split_path(stored)
            if name not in present:
                continue
            if token is None:
                self.remove([name])
            else:
                tokens.setdefault(name, []).append(token)
        for name, toks in tokens.items():
            backend = self._backend(name, dim, collection_type(name) or DEFAULT_TYPE, segmented=True)
            for s in range(0, len(toks), REMOVE_TOKENS):
                backend.delete_where(seg_scope(toks[s : s + REMOVE_TOKENS]))
            if self.spec.kind == "milvus-lite":
                backend.flush()  # durable before the records naming these rows are forgotten

    def describe(self, rec: Segment | None) -> str:
        if rec is None:
            return f"{self.label}: nothing yet"
        name, token = split_path(rec.path)
        return f"{self.label} collection {name}" + (f", segment {token}" if token is not None else "")


def _legacy_type(rec: Segment) -> str:
    """The type a collection of the earlier layout was built as: its record's, or FLAT when too small for IVF."""
    return DEFAULT_TYPE if rec.factory.startswith("IVF") and int(rec.n_vectors) < 39 * LEGACY_NLIST else rec.factory
