"""The Milvus vector backend: one collection whose filterable fields are scalar columns, reached through pymilvus's
``MilvusClient`` (the optional ``unibind[milvus]`` extra). Either its primary keys are the rows' keys (``upsert`` /
``delete`` by key), or it is *segmented*: an automatic primary key, the row ``key`` and a segment token ``seg``, so
the rows of many index segments share it (``insert_segment``, ``delete_where``; searches take a ``scope`` filter).

``--vectors`` names where vectors live (:func:`parse_vectors_spec`): ``faiss`` (the default: FAISS index files),
``milvus-lite:PATH`` (an embedded milvus-lite database in the folder PATH: one process at a time) or
``milvus://host:port`` (a Milvus server, or ``milvus-lite server --data-dir X --port P`` for several processes).

Why these choices: the metric is inner product over unit vectors (= cosine), like the FAISS files; scalar columns,
not JSON, because JSON-path filters are slow; filters are written with ``==`` / ``in`` (Milvus rejects ``=``); a
collection reopened after a restart is ``load``ed before it can be searched; results are padded to [B, k] with
-inf / -1 so callers see the FAISS shapes. FLAT (the default) is exact; IVF_FLAT, IVF_SQ8 and HNSW are
approximate (IVF_PQ does not run on milvus-lite).

A Milvus server caps one search at 16,384 hits (``quotaAndLimits.limits.topK``): ``max_k`` says so and larger
searches are refused with one line (recognition answers its rare larger over-fetches from its own table).
Several backends of one process may share a milvus-lite folder (its embedded server stops with the last one);
several *processes* need ``milvus-lite server --data-dir X --port P`` and ``milvus://127.0.0.1:P``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from unibind.indexer.index.backend import (
    MAX_STR_BYTES,
    Filter,
    VectorBackend,
    check_field_types,
    check_max_k,
    check_queries,
    check_rows,
    empty_result,
)
from unibind.schema.errors import Conflict, InvalidInput, Unavailable
from unibind.schema.settings import VectorsSpec, parse_vectors_spec  # noqa: F401 - the --vectors setting, re-exported

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'unibind[milvus]'"
INDEX_TYPES = ("FLAT", "IVF_FLAT", "IVF_SQ8", "HNSW")
UPSERT_BATCH = 5_000  # rows per upsert call: one gRPC message stays well under Milvus's 64 MB limit at d = 1024
DELETE_BATCH = 16_384
MILVUS_SERVER_MAX_K = 16_384  # a Milvus server refuses a search for more hits (its topk limit); milvus-lite has none
CONNECT_TIMEOUT_S = 10.0
LITE_DB = "milvus.db"  # the milvus-lite data folder inside a ``milvus-lite:PATH`` folder not itself named *.db
_COLLECTION = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
# index build and search parameters of the approximate types (FLAT has none)
NLIST_MIN, NLIST_MAX = 16, 65_536  # IVF lists: 4 sqrt(rows) (Milvus's own advice), within these bounds
NPROBE = 16
HNSW_EF_MIN = 64
KEY_FILTER_CHUNK = 16_384  # keys per ``id in [...]`` expression of a key-filtered search
READ_BATCH = 10_000  # rows per page when keys or vectors are read back
_lite_users: Counter[str] = Counter()  # milvus-lite folders this process has open: backends per folder
KEY, SEG, PK = "key", "seg", "pk"  # a segmented collection's row key, segment token and automatic primary key
SEG_INDEXES = ("INVERTED", "STL_SORT")  # the segment column's index: Milvus 2.4+ and milvus-lite, else Milvus 2.3


def index_params(index: str, rows: int) -> dict[str, int]:
    """The build parameters of a collection of type ``index`` made for about ``rows`` rows: IVF lists from 4 sqrt(rows)
    (at least 16, at most 65,536) unless ``UNIBIND_MILVUS_NLIST`` fixes them; HNSW's M and efConstruction from
    ``UNIBIND_MILVUS_HNSW_M`` / ``UNIBIND_MILVUS_HNSW_EF_CONSTRUCTION`` (16 and 200 by default). FLAT has none."""
    from unibind.schema.settings import MilvusOptions

    opts = MilvusOptions.from_env()
    if index.startswith("IVF"):
        nlist = opts.nlist or int(round(4 * max(int(rows), 1) ** 0.5))
        return {"nlist": max(NLIST_MIN, min(NLIST_MAX, nlist))}
    if index == "HNSW":
        return {"M": opts.hnsw_m, "efConstruction": opts.hnsw_ef_construction}
    return {}


def seg_scope(tokens: Iterable[int]) -> str:
    """The filter naming rows of the segments ``tokens`` in a segmented collection."""
    toks = sorted({int(t) for t in tokens})
    return f"{SEG} == {toks[0]}" if len(toks) == 1 else f"{SEG} in [{', '.join(map(str, toks))}]"


def _both(*parts: str) -> str:
    """Filter expressions joined by ``and`` (empty ones left out)."""
    kept = [p for p in parts if p]
    return kept[0] if len(kept) == 1 else " and ".join(f"({p})" for p in kept)


class _QuietUnimplemented(logging.Filter):
    """milvus-lite's embedded gRPC server (and older Milvus servers) do not implement every call pymilvus makes; it
    probes two (``AllocTimestamp`` when it creates a collection, the MVCC timestamp when it pages through a query)
    and copes with the refusal, but logs it as an ERROR with a traceback, or a WARNING. Milvus 2.3 refuses the
    INVERTED scalar index, which unibind then replaces by STL_SORT. This drops those records only."""

    HARMLESS = ("Method not implemented", "failed to get mvccTs",
                "index type not match")  # Milvus 2.3 refusing the INVERTED index of a collection's seg column

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(h in record.getMessage() for h in self.HARMLESS)


_QUIET = _QuietUnimplemented()
_QUIET_LOGGERS = ("grpc._server", "pymilvus.client.iterator.query_iterator", "pymilvus.decorators")


def _pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError as e:
        raise InvalidInput(f"the Milvus backend needs pymilvus, which is not installed: {INSTALL_HINT}") from e
    return pymilvus


def quote(value: str) -> str:
    """A Milvus expression string literal: double quotes, with backslashes, quotes and control characters escaped."""
    return json.dumps(value, ensure_ascii=False)


def expression(filter: Filter) -> str:
    """A Milvus boolean expression for ``filter``: ``category == 3``, ``label in ["a", "b"]``, joined by ``and``."""
    parts = []
    for c in filter.clauses:
        lit = [quote(v) if isinstance(v, str) else str(int(v)) for v in c.values]
        parts.append(f"{c.field} == {lit[0]}" if len(lit) == 1 else f"{c.field} in [{', '.join(lit)}]")
    return " and ".join(parts)


def _is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "tcp://"))


def lite_path(folder: str | Path) -> Path:
    """The milvus-lite data folder for ``milvus-lite:PATH``: PATH itself when it ends in ``.db`` (pymilvus's rule
    for local databases), else ``PATH/milvus.db``."""
    folder = Path(folder).expanduser().absolute()
    return folder if folder.name.endswith(".db") else folder / LITE_DB


class MilvusBackend(VectorBackend):
    """A Milvus collection: ``id`` INT64 primary key (the row key, not auto) — or, ``segmented``, ``pk`` (automatic),
    ``key`` and ``seg`` INT64 — ``vector`` FLOAT_VECTOR(dim), and one INT64 / VARCHAR column per scalar field; metric
    IP. ``uri``: a milvus-lite folder or ``http://host:port``; ``rows``: about how many rows a new collection starts
    with (its IVF lists are sized for them)."""

    kind = "milvus"

    def __init__(self, uri: str, collection: str | None, dim: int, *, index: str = "FLAT",
                 fields: Mapping[str, str] | None = None, timeout: float = CONNECT_TIMEOUT_S,
                 create: bool = True, shared: bool = False, segmented: bool = False, rows: int = 0) -> None:
        if collection is not None and (not isinstance(collection, str) or not _COLLECTION.fullmatch(collection)):
            raise InvalidInput(f"Milvus collection name {collection!r} must be letters, digits and _ (not first)")
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise InvalidInput(f"vector dimension must be an integer >= 1, got {dim!r}")
        if index not in INDEX_TYPES:
            raise InvalidInput(f"Milvus index type {index!r} is not supported; choose from {', '.join(INDEX_TYPES)}")
        self._types = check_field_types(fields or {})
        if segmented and set(self._types) & {KEY, SEG, PK}:
            raise InvalidInput(f"field names {KEY}, {SEG} and {PK} are taken by a segmented collection's own columns")
        self.collection, self.index, self._dim = collection, index, int(dim)
        # segmented: many segments' rows in one collection (an automatic primary key, the row key, its segment)
        self.segmented, self._rows = segmented, int(rows)
        self.nprobe, self.ef = NPROBE, HNSW_EF_MIN  # search-time settings of the approximate types
        self._pm = _pymilvus()
        for name in _QUIET_LOGGERS:
            if _QUIET not in logging.getLogger(name).filters:
                logging.getLogger(name).addFilter(_QUIET)
        self._local: Path | None = None
        if _is_remote(uri):
            self.uri = uri
            self.max_k = MILVUS_SERVER_MAX_K
        else:
            self._local = lite_path(uri)
            self._local.parent.mkdir(parents=True, exist_ok=True)
            self.uri = str(self._local)
            try:
                import milvus_lite  # noqa: F401
            except ImportError as e:
                raise InvalidInput(f"a milvus-lite folder needs milvus-lite, which is not installed: {INSTALL_HINT}") from e
        self._shared = shared
        try:
            self.client = _shared_client(self._pm, self.uri, timeout) if shared else self._own_client(timeout)
        except Exception as e:  # noqa: BLE001 - pymilvus raises several types for one cause
            self.close()
            if not _is_remote(uri):  # the usual cause: another process has the folder open
                raise Unavailable(
                    f"the milvus-lite folder {uri} could not be opened ({_reason(e)}): one process at a time may open "
                    f"it; is another using it? To share it, run `milvus-lite server --data-dir {uri} --host 127.0.0.1 "
                    "--port 19531` and use --vectors milvus://127.0.0.1:19531") from e
            raise Unavailable(f"Milvus at {uri} cannot be reached ({_reason(e)}); start it or fix --vectors") from e
        if collection is None:
            return  # a connection only: listing and dropping collections
        try:
            self._open(create)
        except Exception:
            self.close()
            raise

    def _own_client(self, timeout: float) -> Any:
        if self._local is not None:
            _lite_users[self.uri] += 1  # the embedded server stops when the last backend on the folder closes
        return self._pm.MilvusClient(uri=self.uri, timeout=timeout, **_connection(self.uri))

    # -- schema -------------------------------------------------------------------------------------------------
    def _open(self, create: bool) -> None:
        """Create the collection (unless ``create`` is False: then a missing one is a Conflict), or check that the
        existing one has this dimension and these fields; then load."""
        c = self._call("list collections", self.client.has_collection, self.collection)
        if c:
            self._check_existing()
        elif create:
            self._create()
        else:
            raise Conflict(f"Milvus collection {self.collection!r} is missing at {self.uri}")
        self.load()

    @property
    def key_field(self) -> str:
        """The column holding the row key: ``key`` in a segmented collection, else the primary key ``id``."""
        return KEY if self.segmented else "id"

    def _create(self) -> None:
        DataType = self._pm.DataType
        schema = self._pm.MilvusClient.create_schema(auto_id=self.segmented, enable_dynamic_field=False)
        if self.segmented:
            schema.add_field(PK, DataType.INT64, is_primary=True)
            schema.add_field(KEY, DataType.INT64)
            schema.add_field(SEG, DataType.INT64)
        else:
            schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self._dim)
        for name, kind in self._types.items():
            if kind == "int64":
                schema.add_field(name, DataType.INT64)
            else:
                schema.add_field(name, DataType.VARCHAR, max_length=MAX_STR_BYTES)
        build = index_params(self.index, self._rows)
        if not self.segmented:
            params = self.client.prepare_index_params()
            params.add_index(field_name="vector", index_type=self.index, metric_type="IP", params=build)
            self._call("create collection", self.client.create_collection, self.collection, schema=schema,
                       index_params=params, consistency_level="Strong")
        else:  # readers filter every search by segment: a scalar index on it, of the kind this Milvus has
            for i, kind in enumerate(SEG_INDEXES):
                with_seg = self.client.prepare_index_params()
                with_seg.add_index(field_name="vector", index_type=self.index, metric_type="IP", params=build)
                with_seg.add_index(field_name=SEG, index_type=kind)
                try:
                    self._call("create collection", self.client.create_collection, self.collection, schema=schema,
                               index_params=with_seg, consistency_level="Strong")
                    break
                except Conflict as e:
                    refused = _reason(e.__cause__ or e).lower()  # Milvus 2.3: "index type not match"; milvus-lite:
                    if i == len(SEG_INDEXES) - 1 or not ("index type not match" in refused  # "... not implemented"
                                                         or "index_type" in refused):
                        raise
                    log.debug("no %s index on %s here (%s); trying %s", kind, SEG, e, SEG_INDEXES[i + 1])
                    if self._call("list collections", self.client.has_collection, self.collection):
                        self._call("drop collection", self.client.drop_collection, self.collection)
        log.info("created Milvus collection %s (dim %d, %s %s, fields %s) at %s",
                 self.collection, self._dim, self.index, build, self._types, self.uri)

    def _check_existing(self) -> None:
        info = self._call("describe collection", self.client.describe_collection, self.collection)
        fields = {f["name"]: f for f in info["fields"]}
        vec = fields.get("vector")
        dim = int(vec.get("params", {}).get("dim", -1)) if vec else -1
        if dim != self._dim:
            raise Conflict(f"Milvus collection {self.collection!r} at {self.uri} holds vectors of dimension {dim}, "
                           f"not {self._dim}; use another collection or drop it")
        DataType = self._pm.DataType
        own = (PK, KEY, SEG, "vector") if self.segmented else ("id", "vector")
        if self.segmented != (PK in fields and KEY in fields and SEG in fields):
            raise Conflict(f"Milvus collection {self.collection!r} at {self.uri} is "
                           f"{'not ' if self.segmented else ''}a segmented collection of unibind")
        have = {n: ("int64" if f["type"] == DataType.INT64 else "str" if f["type"] == DataType.VARCHAR else "?")
                for n, f in fields.items() if n not in own}
        if have != self._types:
            raise Conflict(f"Milvus collection {self.collection!r} at {self.uri} has fields {have}, not "
                           f"{self._types}; use another collection or drop it")

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a pymilvus call; a connection failure becomes Unavailable, a refusal Conflict (one line each)."""
        try:
            return fn(*args, **kwargs)
        except self._pm.exceptions.MilvusException as e:
            ex = self._pm.exceptions
            lost = (ex.ConnectError, ex.MilvusUnavailableException, ex.ConnectionNotExistException)
            if isinstance(e, lost) or "unavailable" in str(e).lower():
                raise Unavailable(f"Milvus at {self.uri}: {what} failed ({_reason(e)}); is the server running?") from e
            raise Conflict(f"Milvus at {self.uri}: {what} on {self.collection!r} failed ({_reason(e)})") from e

    # -- the interface ------------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fields(self) -> dict[str, str]:
        return dict(self._types)

    def upsert(self, ids: np.ndarray, vectors: np.ndarray, fields: Mapping[str, np.ndarray] | None = None) -> None:
        if self.segmented:
            raise Conflict(f"Milvus collection {self.collection!r} is segmented: insert a segment instead")
        ids, vectors, columns = check_rows(self._dim, self._types, ids, vectors, fields)
        for s in range(0, len(ids), UPSERT_BATCH):
            part = slice(s, s + UPSERT_BATCH)
            cols = {name: col[part].tolist() for name, col in columns.items()}
            rows = [{"id": i, "vector": v, **{n: c[j] for n, c in cols.items()}}
                    for j, (i, v) in enumerate(zip(ids[part].tolist(), vectors[part]))]
            self._call("upsert", self.client.upsert, self.collection, rows)

    def insert_segment(self, token: int, ids: np.ndarray, vectors: np.ndarray,
                       fields: Mapping[str, np.ndarray] | None = None) -> int:
        """Insert rows as segment ``token`` of a segmented collection (a row key may also be in other segments);
        returns how many rows Milvus acknowledged."""
        if not self.segmented:
            raise Conflict(f"Milvus collection {self.collection!r} is not segmented")
        ids, vectors, columns = check_rows(self._dim, self._types, ids, vectors, fields)
        done = 0
        for s in range(0, len(ids), UPSERT_BATCH):
            part = slice(s, s + UPSERT_BATCH)
            cols = {name: col[part].tolist() for name, col in columns.items()}
            rows = [{KEY: i, SEG: int(token), "vector": v, **{n: c[j] for n, c in cols.items()}}
                    for j, (i, v) in enumerate(zip(ids[part].tolist(), vectors[part]))]
            # no retry inside pymilvus: a batch applied whose answer was lost would go in twice under new primary
            # keys; a failed insert fails the write instead, which then deletes its token's rows
            done += int(self._call("insert", self.client.insert, self.collection, rows, retry_times=0)["insert_count"])
        return done

    def delete_where(self, expr: str) -> None:
        """Remove the rows that pass a filter expression (a segment's rows: ``seg == token``)."""
        self._call("delete", self.client.delete, self.collection, filter=expr)

    def delete(self, ids: np.ndarray) -> None:
        if self.segmented:
            raise Conflict(f"Milvus collection {self.collection!r} is segmented: remove a segment's rows instead")
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        for s in range(0, len(ids), DELETE_BATCH):
            self._call("delete", self.client.delete, self.collection, ids=ids[s : s + DELETE_BATCH].tolist())

    def count(self, scope: str = "") -> int:
        """Exact row count, of the rows that pass ``scope`` when given (a ``count(*)`` query; the collection
        statistics can lag behind deletes on a server)."""
        res = self._call("count", self.client.query, self.collection, filter=scope, output_fields=["count(*)"])
        return int(res[0]["count(*)"])

    def _search_params(self, k: int) -> dict[str, Any]:
        params: dict[str, int] = {}
        if self.index.startswith("IVF"):
            params["nprobe"] = self.nprobe
        elif self.index == "HNSW":
            params["ef"] = max(k, self.ef)
        return {"metric_type": "IP", "params": params}

    def search(
        self, queries: np.ndarray, k: int, filter: Filter | None = None, scope: str = ""
    ) -> tuple[np.ndarray, np.ndarray]:
        """``scope``: a filter expression every hit must also pass (the segments a reader searches)."""
        q = check_queries(self._dim, queries, k)
        k = int(k)
        check_max_k(self, k)
        expr = ""
        if filter is not None:
            filter.check(self._types)
            if filter.matches_nothing:
                return empty_result(q.shape[0], k)
            expr = expression(filter)
        scores, ids = empty_result(q.shape[0], k)
        if q.shape[0] == 0:
            return scores, ids
        # output_fields=["id"]: the key only (an empty list makes milvus-lite return every column, vectors too)
        res = self._call("search", self.client.search, self.collection, data=q, limit=k, filter=_both(scope, expr),
                         output_fields=[self.key_field], search_params=self._search_params(k))
        self._fill(res, scores, ids)
        return scores, ids

    def _fill(self, res: Any, scores: np.ndarray, ids: np.ndarray) -> None:
        """Copy a search result's keys and scores into the [B, k] arrays (the rest stays padding)."""
        for b, hits in enumerate(res):
            n = len(hits)
            if self.segmented:
                ids[b, :n] = [h["entity"][KEY] for h in hits]
            else:
                ids[b, :n] = hits.ids
            scores[b, :n] = hits.distances

    def search_keys(self, queries: np.ndarray, k: int, keys: np.ndarray, scope: str = "") -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`search`, among the rows whose key is in ``keys`` only: ``id in [...]`` filters of at most
        KEY_FILTER_CHUNK keys each, the chunks' hits merged (exact on FLAT: exactly min(k, keys present) hits)."""
        q = check_queries(self._dim, queries, k)
        k = int(k)
        check_max_k(self, k)
        keys = np.unique(np.asarray(keys, dtype=np.int64))
        best_s, best_i = empty_result(q.shape[0], k)
        if not keys.size or not q.shape[0]:
            return best_s, best_i
        for s in range(0, keys.size, KEY_FILTER_CHUNK):
            chunk = keys[s : s + KEY_FILTER_CHUNK]
            expr = f"{self.key_field} in [{', '.join(map(str, chunk.tolist()))}]"
            res = self._call("search", self.client.search, self.collection, data=q, limit=min(k, chunk.size),
                             filter=_both(scope, expr), output_fields=[self.key_field],
                             search_params=self._search_params(k))
            part_s, part_i = empty_result(q.shape[0], k)
            self._fill(res, part_s, part_i)
            both_s, both_i = np.concatenate([best_s, part_s], axis=1), np.concatenate([best_i, part_i], axis=1)
            order = np.argsort(-both_s, axis=1, kind="stable")[:, :k]
            best_s, best_i = np.take_along_axis(both_s, order, axis=1), np.take_along_axis(both_i, order, axis=1)
        return best_s, best_i

    def ids(self, scope: str = "") -> np.ndarray:
        """Every key in the collection (of the rows that pass ``scope``; unordered), read in pages."""
        key = self.key_field
        it = self._call("read keys", self.client.query_iterator, self.collection, batch_size=READ_BATCH, filter=scope,
                        output_fields=[key])
        parts = []
        try:
            while True:
                page = self._call("read keys", it.next)
                if not page:
                    break
                parts.append(np.fromiter((r[key] for r in page), dtype=np.int64, count=len(page)))
        finally:
            it.close()
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def vectors(self, ids: np.ndarray, scope: str = "") -> tuple[np.ndarray, np.ndarray]:
        """(keys, [n, d] vectors) of the rows among ``ids`` that exist (and pass ``scope``), in the order of ``ids``."""
        ids = np.asarray(ids, dtype=np.int64)
        found: dict[int, list[float]] = {}
        for s in range(0, ids.size, READ_BATCH):
            chunk = ids[s : s + READ_BATCH].tolist()
            if self.segmented:
                rows = self._call("read vectors", self.client.query, self.collection,
                                  filter=_both(scope, f"{KEY} in [{', '.join(map(str, chunk))}]"),
                                  output_fields=[KEY, "vector"], limit=len(chunk))
            else:
                rows = self._call("read vectors", self.client.get, self.collection, ids=chunk, output_fields=["vector"])
            found.update((int(r[self.key_field]), r["vector"]) for r in rows)
        keys = np.array([i for i in ids.tolist() if i in found], dtype=np.int64)
        vecs = np.array([found[i] for i in keys.tolist()], dtype=np.float32).reshape(len(keys), self._dim)
        return keys, vecs

    def collections(self, prefix: str = "") -> list[str]:
        """The names of the collections at this backend's Milvus that start with ``prefix``."""
        return sorted(c for c in self._call("list collections", self.client.list_collections) if c.startswith(prefix))

    def drop_collection(self, name: str) -> None:
        """Remove another collection at the same Milvus (the payloads of segments that went); a missing one is no error."""
        if self._call("list collections", self.client.has_collection, name):
            self._call("drop collection", self.client.drop_collection, name)

    def flush(self) -> None:
        self._call("flush", self.client.flush, self.collection)

    def load(self) -> None:
        self._call("load collection", self.client.load_collection, self.collection)

    def drop(self) -> None:
        """Remove the collection and its rows (tests, rebuilds)."""
        self._call("drop collection", self.client.drop_collection, self.collection)

    def describe(self) -> dict[str, object]:
        return {"backend": self.kind, "uri": self.uri, "lite": not _is_remote(self.uri),
                "collection": self.collection, "index": self.index, "metric": "IP", "dim": self._dim,
                "count": self.count(), "fields": self.fields}

    def close(self) -> None:
        """Close the client; for milvus-lite, when this is the last open backend on the folder in this process, also
        stop the process's embedded server for it, so that another process (or a new backend here) can open it and
        sees only what was flushed. Idempotent."""
        client = getattr(self, "client", None)
        if getattr(self, "_shared", False):  # the process's connection stays for the other backends
            self.client = None
            return
        if client is not None:
            try:
                client.close()
            except Exception as e:  # noqa: BLE001 - closing must not mask the error that led here
                log.debug("closing the Milvus client: %s", e)
            self.client = None
        if self._local is not None and _lite_users[self.uri] > 0:
            _lite_users[self.uri] -= 1
            if not _lite_users[self.uri]:  # the last backend on the folder: stop its embedded server
                del _lite_users[self.uri]
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(str(self._local))
            self._local = None


_shared_clients: dict[str, Any] = {}
_shared_lock = threading.Lock()


def _shared_client(pm: Any, uri: str, timeout: float) -> Any:
    """One client per Milvus (or milvus-lite folder) for the whole process, kept until it exits: a service builds
    a new snapshot of its indexes at every publish, and each would otherwise open (and leak) connections. gRPC
    channels are thread-safe. For a milvus-lite folder this also keeps its embedded server running."""
    with _shared_lock:
        client = _shared_clients.get(uri)
        if client is None:
            if not _is_remote(uri):
                _lite_users[uri] += 1  # never released: the process's embedded server for the folder
            client = _shared_clients[uri] = pm.MilvusClient(uri=uri, timeout=timeout, **_connection(uri))
        return client


def close_shared(uri: str | None = None) -> None:
    """Close the process's shared client of ``uri`` (a server URL or milvus-lite folder as given to a backend;
    None: every one), stopping the embedded server of a milvus-lite folder no other backend holds. Backends
    made before on that client are not used afterwards."""
    with _shared_lock:
        keys = list(_shared_clients) if uri is None else [k for k in _shared_clients if k in (uri, _key(uri))]
        for key in keys:
            client = _shared_clients.pop(key)
            try:
                client.close()
            except Exception as e:  # noqa: BLE001 - closing must not mask anything
                log.debug("closing the shared Milvus client of %s: %s", key, e)
            if not _is_remote(key) and _lite_users[key] > 0:
                _lite_users[key] -= 1
                if not _lite_users[key]:
                    del _lite_users[key]
                    from milvus_lite.server_manager import server_manager_instance

                    server_manager_instance.release_server(key)


def _connection(uri: str) -> dict[str, Any]:
    """Token, user and password, database and TLS for a server (the Milvus settings); nothing for a
    milvus-lite folder."""
    from unibind.schema.settings import MilvusOptions

    return MilvusOptions.from_env().client_kwargs() if _is_remote(uri) else {}


def _key(uri: str) -> str:
    """How a backend keys ``uri``: a server URL as it is, a milvus-lite folder as its data folder path."""
    return uri if _is_remote(uri) else str(lite_path(uri))


def _reason(e: BaseException) -> str:
    """The first line of a pymilvus error, without its ``<ExceptionType: (code=..., message=...)>`` wrapping."""
    text = str(getattr(e, "message", "") or e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]
