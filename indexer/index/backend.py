"""One interface over the places vectors can live: int64 keys, unit vectors, a few scalar fields per row, exact
inner-product search with an optional filter on those fields.

Two implementations answer it: :class:`FaissBackend` (a FAISS index file, the default, with its scalar fields in
NumPy arrays beside it) and ``milvus_backend.MilvusBackend`` (a Milvus collection: milvus-lite in a folder, or a
server). Callers see one contract, whichever holds the vectors:

* ``upsert(ids, vectors, fields)`` inserts or overwrites rows by key; ``delete(ids)`` removes them; ``count()``;
* ``search(queries, k, filter)`` → (scores [B, k] float32, ids [B, k] int64), best first, padded with -inf / -1
  when fewer than k rows (pass the filter); with a filter, exactly min(k, rows that pass) hits per query;
* ``flush()`` makes the rows durable; ``load()`` makes what was stored searchable after a (re)open; ``close()``;
* ``describe()`` → a small dict for logs and ``unibind config``-style reports.

A :class:`Filter` is an AND of ``field in values`` clauses (``field == value`` is the one-value case); each backend
translates it (FAISS: an id selector from the fields it keeps; Milvus: a boolean expression on scalar columns).
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import numpy as np

from unibind.indexer.index.exact import exact_knn
from unibind.indexer.index.files import write_atomically
from unibind.indexer.index.vector_store import VectorStore
from unibind.indexer.runtime.device import Device
from unibind.schema.errors import Conflict, InvalidInput

log = logging.getLogger(__name__)

FIELD_TYPES = ("int64", "str")  # scalar field types every backend stores as a real column
MAX_STR_BYTES = 2048  # the longest string field value (UTF-8 bytes; Milvus VARCHAR needs a max_length): a label
# of the store is at most 500 characters, 2,000 bytes
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
RESERVED = ("id", "vector")  # column names the backends use themselves
Value = int | str


def check_field_types(fields: Mapping[str, str]) -> dict[str, str]:
    """``{name: "int64" | "str"}`` validated: names are identifiers and not ``id`` / ``vector``."""
    out = {}
    for name, kind in dict(fields).items():
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name in RESERVED:
            raise InvalidInput(f"field name {name!r} is not allowed: use an identifier other than {', '.join(RESERVED)}")
        if kind not in FIELD_TYPES:
            raise InvalidInput(f"field {name!r} has type {kind!r}; choose from {', '.join(FIELD_TYPES)}")
        out[name] = kind
    return out


def _value(v: object) -> Value:
    if isinstance(v, (bool, np.bool_)):
        raise InvalidInput(f"filter value {v!r} is a boolean; filters compare int64 or string fields")
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (str, np.str_)):
        return str(v)
    raise InvalidInput(f"filter value {v!r} is a {type(v).__name__}; filters compare int64 or string fields")


@dataclass(frozen=True)
class Clause:
    """``field in values`` (``field == value`` when there is one value)."""

    field: str
    values: tuple[Value, ...]


@dataclass(frozen=True)
class Filter:
    """Rows whose scalar fields pass every clause (AND). Build with :meth:`eq` / :meth:`isin`, combine with ``&``."""

    clauses: tuple[Clause, ...] = field(default=())

    @classmethod
    def eq(cls, name: str, value: Value) -> Filter:
        return cls.isin(name, [value])

    @classmethod
    def isin(cls, name: str, values: Iterable[Value] | np.ndarray) -> Filter:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidInput(f"filter field {name!r} is not a field name")
        if isinstance(values, (str, bytes)):
            raise InvalidInput(f"filter values for {name!r} must be a list, not the string {values!r}")
        vals = tuple(dict.fromkeys(_value(v) for v in np.asarray(values, dtype=object).ravel().tolist()))
        if len({type(v) for v in vals}) > 1:
            raise InvalidInput(f"filter values for {name!r} mix integers and strings")
        return cls((Clause(name, vals),))

    def __and__(self, other: Filter) -> Filter:
        return Filter(self.clauses + other.clauses)

    @property
    def matches_nothing(self) -> bool:
        """A clause with no values: no row passes (backends answer without searching)."""
        return any(not c.values for c in self.clauses)

    def check(self, types: Mapping[str, str]) -> None:
        """Every clause names a declared field and compares it with values of its type."""
        for c in self.clauses:
            kind = types.get(c.field)
            if kind is None:
                known = ", ".join(sorted(types)) or "none"
                raise InvalidInput(f"filter on unknown field {c.field!r}; this backend's fields: {known}")
            want = int if kind == "int64" else str
            if any(not isinstance(v, want) for v in c.values):
                raise InvalidInput(f"filter on {c.field!r} ({kind}) compares it with {c.values[:3]!r}")

    def mask(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """[n] bool: which rows of ``columns`` (one aligned array per field) pass."""
        n = len(next(iter(columns.values()))) if columns else 0
        keep = np.ones(n, dtype=bool)
        for c in self.clauses:
            keep &= np.isin(columns[c.field], np.asarray(c.values))
        return keep


def empty_result(b: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """[B, k] of no hits: scores -inf, ids -1."""
    return np.full((b, k), -np.inf, dtype=np.float32), np.full((b, k), -1, dtype=np.int64)


def check_rows(
    dim: int, types: Mapping[str, str], ids: np.ndarray, vectors: np.ndarray, fields: Mapping[str, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """An upsert's arguments validated the same way for every backend: unique ids >= 0, [n, dim] finite
    float32 vectors, and exactly the declared fields, one value per row, of their declared types."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
        raise InvalidInput(f"ids must be a 1-d array of integers, got {ids.dtype} {ids.shape}")
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape != (len(ids), dim):
        raise InvalidInput(f"vectors of shape {vectors.shape} do not fit {len(ids)} ids of dimension {dim}")
    if (ids < 0).any():
        raise InvalidInput(f"id {int(ids[ids < 0][0])} is negative; ids are int64 keys >= 0 (-1 marks no hit)")
    if len(np.unique(ids)) != len(ids):
        raise InvalidInput("ids repeat within one upsert; give each key once")
    if not np.isfinite(vectors).all():
        raise InvalidInput("vectors contain NaN or infinite values")
    given = dict(fields or {})
    if set(given) != set(types):
        raise InvalidInput(f"upsert gives fields {sorted(given)}; this backend stores exactly {sorted(types)}")
    out = {}
    for name, kind in types.items():
        col = np.asarray(given[name])
        if col.shape != (len(ids),):
            raise InvalidInput(f"field {name!r} has shape {col.shape}; expected one value per row ({len(ids)})")
        if kind == "int64":
            if col.size and not np.issubdtype(col.dtype, np.integer):
                raise InvalidInput(f"field {name!r} is int64; got values of type {col.dtype}")
            out[name] = col.astype(np.int64)
        else:
            values = [str(v) if isinstance(v, (str, np.str_)) else None for v in col.tolist()]
            if any(v is None for v in values):
                raise InvalidInput(f"field {name!r} is a string field; got a non-string value")
            long = [v for v in values if len(v.encode()) > MAX_STR_BYTES]
            if long:
                raise InvalidInput(f"field {name!r}: value {long[0][:40]!r}... is over {MAX_STR_BYTES} UTF-8 bytes")
            out[name] = np.array(values, dtype=str) if values else np.empty(0, dtype="<U1")
    return ids, vectors, out


def check_queries(dim: int, queries: np.ndarray, k: int) -> np.ndarray:
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != dim:
        raise InvalidInput(f"queries of shape {q.shape} do not fit vectors of dimension {dim}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidInput(f"k must be an integer >= 1, got {k!r}")
    return q


def check_max_k(backend: VectorBackend, k: int) -> None:
    """A search for more hits than the backend's :attr:`~VectorBackend.max_k` is refused with one clear line."""
    if backend.max_k is not None and k > backend.max_k:
        raise InvalidInput(f"the {backend.kind} backend returns at most {backend.max_k} hits per search; "
                           f"{k} were asked for")


class VectorBackend(ABC):
    """Where vectors live: keys, vectors, scalar fields; exact inner-product search (see the module docstring)."""

    kind: str = "backend"
    # the most hits one search may return (a Milvus server answers at most 16,384); None: no limit. Callers that
    # need more (recognition's over-fetch on very large centres) search their own copy of the vectors instead.
    max_k: int | None = None

    @property
    @abstractmethod
    def dim(self) -> int: ...

    @property
    @abstractmethod
    def fields(self) -> dict[str, str]:
        """The scalar fields every row carries: ``{name: "int64" | "str"}``."""

    @abstractmethod
    def upsert(self, ids: np.ndarray, vectors: np.ndarray, fields: Mapping[str, np.ndarray] | None = None) -> None:
        """Insert rows, overwriting any with the same key (vector and fields)."""

    @abstractmethod
    def delete(self, ids: np.ndarray) -> None:
        """Remove rows by key; keys that are not there are ignored."""

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def search(
        self, queries: np.ndarray, k: int, filter: Filter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """[B, d] unit queries → (scores [B, k] float32, ids [B, k] int64), best first; -inf / -1 past the last
        hit. Among the rows passing ``filter`` when given: exactly min(k, rows passing) hits per query."""

    @abstractmethod
    def flush(self) -> None:
        """Make every upsert and delete so far durable."""

    @abstractmethod
    def load(self) -> None:
        """Make the stored rows searchable (after a reopen); idempotent."""

    @abstractmethod
    def describe(self) -> dict[str, object]: ...

    def close(self) -> None:
        """Release what the backend holds (connections, files); the object is not used afterwards."""

    def __enter__(self) -> VectorBackend:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def fields_path(index_path: Path) -> Path:
    """Where a FAISS backend keeps its keys and scalar fields: ``<index file>.fields.npz``."""
    return index_path.with_name(index_path.name + ".fields.npz")


class FaissBackend(VectorBackend):
    """A :class:`VectorStore` (FAISS, inner product) plus its rows' keys and scalar fields in NumPy arrays
    (sorted by key), enough to turn a :class:`Filter` into an id selector. With ``path``, ``flush`` writes the
    index and ``<path>.fields.npz`` atomically and a new backend on the same path reads them back."""

    kind = "faiss"

    def __init__(self, dim: int, *, fields: Mapping[str, str] | None = None, path: Path | None = None,
                 device: Device | None = None, factory: str = "Flat", max_k: int | None = None) -> None:
        if max_k is not None and (isinstance(max_k, bool) or not isinstance(max_k, int) or max_k < 1):
            raise InvalidInput(f"max_k must be an integer >= 1 or None, got {max_k!r}")
        self.max_k = max_k  # a limit of the deployment's own (None: FAISS has none on the CPU)
        self._types = check_field_types(fields or {})
        self.path = Path(path) if path is not None else None
        self.device = device or Device()
        self.factory = factory
        self._keys = np.empty(0, dtype=np.int64)  # [n] sorted keys
        self._columns = {name: self._empty(kind) for name, kind in self._types.items()}  # aligned with _keys
        if self.path is not None and self.path.is_file():
            self._read(dim)
        else:
            self.store = VectorStore.create(dim, self.device, factory)

    @staticmethod
    def _empty(kind: str) -> np.ndarray:
        return np.empty(0, dtype=np.int64 if kind == "int64" else "<U1")

    def _read(self, dim: int) -> None:
        assert self.path is not None
        store = VectorStore.load(self.path, self.device, self.factory)
        if store.dim != dim:
            raise Conflict(f"{self.path} holds vectors of dimension {store.dim}, not {dim}; use another path")
        side = fields_path(self.path)
        if not side.is_file():
            raise Conflict(f"{side} is missing beside {self.path}; rebuild the index")
        with np.load(side, allow_pickle=False) as npz:
            keys = npz["__keys__"]
            stored = {name: npz[name] for name in npz.files if name != "__keys__"}
        if set(stored) != set(self._types):
            raise Conflict(f"{side} stores fields {sorted(stored)}, not {sorted(self._types)}; use another path")
        if len(keys) != store.ntotal or not np.array_equal(np.sort(store.ids()), keys):
            raise Conflict(f"{side} does not list the keys of {self.path} (a crash between the two writes?); rebuild")
        self.store, self._keys, self._columns = store, keys, stored

    @property
    def dim(self) -> int:
        return self.store.dim

    @property
    def fields(self) -> dict[str, str]:
        return dict(self._types)

    def count(self) -> int:
        return int(len(self._keys))

    def _remove(self, ids: np.ndarray) -> None:
        """Drop existing keys ``ids`` (sorted, all present) from the index and the arrays."""
        if not len(ids):
            return
        if not self.store.remove(ids):  # e.g. HNSW: rebuild from the vectors it keeps
            keep = np.setdiff1d(self._keys, ids, assume_unique=True)
            vectors = self._vectors_of(keep) if len(keep) else np.empty((0, self.dim), np.float32)
            self.store = VectorStore.from_vectors(self.dim, self.device, self.factory, keep, vectors)
        stay = ~np.isin(self._keys, ids, assume_unique=True)
        self._keys = self._keys[stay]
        self._columns = {name: col[stay] for name, col in self._columns.items()}

    def _vectors_of(self, keys: np.ndarray) -> np.ndarray:
        return self.store.vectors_of(keys)

    def upsert(self, ids: np.ndarray, vectors: np.ndarray, fields: Mapping[str, np.ndarray] | None = None) -> None:
        ids, vectors, columns = check_rows(self.dim, self._types, ids, vectors, fields)
        if not len(ids):
            return
        self._remove(np.intersect1d(self._keys, ids, assume_unique=True))
        self.store.add(ids, vectors)
        keys = np.concatenate([self._keys, ids])
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._columns = {name: np.concatenate([self._columns[name], columns[name]])[order] for name in self._types}

    def delete(self, ids: np.ndarray) -> None:
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        self._remove(np.intersect1d(self._keys, ids, assume_unique=True))

    def search(
        self, queries: np.ndarray, k: int, filter: Filter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        q = check_queries(self.dim, queries, k)
        k = int(k)
        check_max_k(self, k)
        if filter is not None:
            filter.check(self._types)
        allowed = None if filter is None or not filter.clauses else self._keys[filter.mask(self._columns)]
        if allowed is not None and len(allowed) == self.count():
            allowed = None  # every row passes: the plain (BLAS) search, not FAISS's selector scan
        n = self.count() if allowed is None else len(allowed)
        if n == 0 or q.shape[0] == 0:
            return empty_result(q.shape[0], k)
        kk = min(k, n)
        if allowed is None:
            scores, ids = self.store.search(q, kk)
        else:
            scores, ids = self.store.search_subset(q, kk, allowed)
        if (ids < 0).any() and self.factory != "Flat":  # an approximate index missed some: exact fallback
            pool = self._keys if allowed is None else allowed
            scores, ids = exact_knn(q, pool, self._vectors_of(pool), kk)
        out_s, out_i = empty_result(q.shape[0], k)
        out_s[:, :kk], out_i[:, :kk] = np.where(ids >= 0, scores, -np.inf), ids
        return out_s, out_i

    def flush(self) -> None:
        if self.path is None:
            return
        self.store.save(self.path)
        arrays = {"__keys__": self._keys, **self._columns}
        write_atomically(fields_path(self.path), lambda tmp: _save_npz(tmp, arrays))

    def load(self) -> None:
        """Nothing to do: the index is in memory from the moment the backend is made."""

    def describe(self) -> dict[str, object]:
        return {"backend": self.kind, "dim": self.dim, "count": self.count(), "factory": self.factory,
                "path": str(self.path) if self.path else None, "fields": self.fields}


def _save_npz(tmp: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a path
        np.savez(f, **arrays)


