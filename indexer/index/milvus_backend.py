"""The Milvus vector backend: one collection whose primary keys are the rows' keys and whose filterable fields are
scalar columns, reached through pymilvus's ``MilvusClient`` (the optional ``unibind[milvus]`` extra).

``--vectors`` names where vectors live (:func:`parse_vectors_spec`): ``faiss`` (the default: FAISS index files),
``milvus-lite:PATH`` (an embedded milvus-lite database in the folder PATH: one process at a time) or
``milvus://host:port`` (a Milvus server, or ``milvus-lite server --data-dir X --port P`` for several processes).

Why these choices: the metric is inner product over unit vectors (= cosine), like the FAISS files; scalar columns,
not JSON, because JSON-path filters are slow; filters are written with ``==`` / ``in`` (Milvus rejects ``=``); a
collection reopened after a restart is ``load``ed before it can be searched; results are padded to [B, k] with
-inf / -1 so callers see the FAISS shapes. FLAT (the default) is exact; IVF_FLAT, IVF_SQ8 and HNSW are
approximate (IVF_PQ does not run on milvus-lite).

Not handled yet: a Milvus server caps one search at 16,384 hits (``quotaAndLimits.limits.topK``); milvus-lite does
not. Callers that may ask for more (recognition's over-fetch on large centres) get the server's refusal as Conflict.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'unibind[milvus]'"
SPEC_FORMS = "faiss (the default), milvus-lite:PATH or milvus://host:port"
INDEX_TYPES = ("FLAT", "IVF_FLAT", "IVF_SQ8", "HNSW")
UPSERT_BATCH = 5_000  # rows per upsert call: one gRPC message stays well under Milvus's 64 MB limit at d = 1024
DELETE_BATCH = 16_384
MILVUS_SERVER_MAX_K = 16_384  # a Milvus server refuses a search for more hits (its topk limit); milvus-lite has none
CONNECT_TIMEOUT_S = 10.0
LITE_DB = "milvus.db"  # the milvus-lite data folder inside a ``milvus-lite:PATH`` folder not itself named *.db
_COLLECTION = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
# index build and search parameters of the approximate types (FLAT has none)
INDEX_PARAMS: dict[str, dict[str, int]] = {"IVF_FLAT": {"nlist": 128}, "IVF_SQ8": {"nlist": 128},
                                          "HNSW": {"M": 16, "efConstruction": 200}}
NPROBE = 16
HNSW_EF_MIN = 64


@dataclass(frozen=True)
class VectorsSpec:
    """Where vectors live: ``kind`` "faiss" (uri None), "milvus-lite" (uri = a folder) or "milvus" (uri =
    ``http://host:port``)."""

    kind: Literal["faiss", "milvus-lite", "milvus"]
    uri: str | None = None


def parse_vectors_spec(spec: str | None) -> VectorsSpec:
    """``faiss`` / None / "" → FAISS files; ``milvus-lite:PATH``; ``milvus://host:port`` (port required)."""
    if spec is None or spec.strip() in ("", "faiss"):
        return VectorsSpec("faiss")
    spec = spec.strip()
    if spec.startswith("milvus-lite:"):
        path = spec[len("milvus-lite:"):]
        if path.strip():
            return VectorsSpec("milvus-lite", path)
    m = re.fullmatch(r"milvus://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})/?", spec)
    if m and 0 < int(m.group(2)) < 65536:
        return VectorsSpec("milvus", f"http://{m.group(1)}:{int(m.group(2))}")
    raise InvalidInput(f"--vectors {spec!r} is not understood; use {SPEC_FORMS}")


class _QuietUnimplemented(logging.Filter):
    """milvus-lite's embedded gRPC server does not implement every Milvus call; pymilvus probes one
    (``AllocTimestamp``) when it creates a collection and copes with the refusal, but grpc logs it as an ERROR
    with a traceback. This drops that one record and nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Method not implemented" not in record.getMessage()


_QUIET = _QuietUnimplemented()


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
    """A Milvus collection: ``id`` INT64 primary key (the row key, not auto), ``vector`` FLOAT_VECTOR(dim), and one
    INT64 / VARCHAR column per scalar field; metric IP. ``uri``: a milvus-lite folder or ``http://host:port``."""

    kind = "milvus"

    def __init__(self, uri: str, collection: str, dim: int, *, index: str = "FLAT",
                 fields: Mapping[str, str] | None = None, timeout: float = CONNECT_TIMEOUT_S) -> None:
        if not isinstance(collection, str) or not _COLLECTION.fullmatch(collection):
            raise InvalidInput(f"Milvus collection name {collection!r} must be letters, digits and _ (not first)")
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise InvalidInput(f"vector dimension must be an integer >= 1, got {dim!r}")
        if index not in INDEX_TYPES:
            raise InvalidInput(f"Milvus index type {index!r} is not supported; choose from {', '.join(INDEX_TYPES)}")
        self._types = check_field_types(fields or {})
        self.collection, self.index, self._dim = collection, index, int(dim)
        self._pm = _pymilvus()
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
            grpc_server_log = logging.getLogger("grpc._server")
            if _QUIET not in grpc_server_log.filters:
                grpc_server_log.addFilter(_QUIET)
        try:
            self.client = self._pm.MilvusClient(uri=self.uri, timeout=timeout)
        except Exception as e:  # noqa: BLE001 - pymilvus raises several types for one cause
            raise Unavailable(f"Milvus at {uri} cannot be reached ({_reason(e)}); start it or fix --vectors") from e
        try:
            self._open()
        except Exception:
            self.close()
            raise

    # -- schema -------------------------------------------------------------------------------------------------
    def _open(self) -> None:
        """Create the collection, or check that the existing one has this dimension and these fields; then load."""
        c = self._call("list collections", self.client.has_collection, self.collection)
        if c:
            self._check_existing()
        else:
            self._create()
        self.load()

    def _create(self) -> None:
        DataType = self._pm.DataType
        schema = self._pm.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self._dim)
        for name, kind in self._types.items():
            if kind == "int64":
                schema.add_field(name, DataType.INT64)
            else:
                schema.add_field(name, DataType.VARCHAR, max_length=MAX_STR_BYTES)
        params = self.client.prepare_index_params()
        params.add_index(field_name="vector", index_type=self.index, metric_type="IP",
                         params=INDEX_PARAMS.get(self.index, {}))
        self._call("create collection", self.client.create_collection, self.collection, schema=schema,
                   index_params=params, consistency_level="Strong")
        log.info("created Milvus collection %s (dim %d, %s, fields %s) at %s",
                 self.collection, self._dim, self.index, self._types, self.uri)

    def _check_existing(self) -> None:
        info = self._call("describe collection", self.client.describe_collection, self.collection)
        fields = {f["name"]: f for f in info["fields"]}
        vec = fields.get("vector")
        dim = int(vec.get("params", {}).get("dim", -1)) if vec else -1
        if dim != self._dim:
            raise Conflict(f"Milvus collection {self.collection!r} at {self.uri} holds vectors of dimension {dim}, "
                           f"not {self._dim}; use another collection or drop it")
        DataType = self._pm.DataType
        have = {n: ("int64" if f["type"] == DataType.INT64 else "str" if f["type"] == DataType.VARCHAR else "?")
                for n, f in fields.items() if n not in ("id", "vector")}
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
        ids, vectors, columns = check_rows(self._dim, self._types, ids, vectors, fields)
        for s in range(0, len(ids), UPSERT_BATCH):
            part = slice(s, s + UPSERT_BATCH)
            cols = {name: col[part].tolist() for name, col in columns.items()}
            rows = [{"id": i, "vector": v, **{n: c[j] for n, c in cols.items()}}
                    for j, (i, v) in enumerate(zip(ids[part].tolist(), vectors[part]))]
            self._call("upsert", self.client.upsert, self.collection, rows)

    def delete(self, ids: np.ndarray) -> None:
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        for s in range(0, len(ids), DELETE_BATCH):
            self._call("delete", self.client.delete, self.collection, ids=ids[s : s + DELETE_BATCH].tolist())

    def count(self) -> int:
        """Exact row count (a ``count(*)`` query; the collection statistics can lag behind deletes on a server)."""
        res = self._call("count", self.client.query, self.collection, filter="", output_fields=["count(*)"])
        return int(res[0]["count(*)"])

    def _search_params(self, k: int) -> dict[str, Any]:
        params: dict[str, int] = {}
        if self.index.startswith("IVF"):
            params["nprobe"] = NPROBE
        elif self.index == "HNSW":
            params["ef"] = max(k, HNSW_EF_MIN)
        return {"metric_type": "IP", "params": params}

    def search(
        self, queries: np.ndarray, k: int, filter: Filter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
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
        res = self._call("search", self.client.search, self.collection, data=q, limit=k, filter=expr,
                         output_fields=["id"], search_params=self._search_params(k))
        for b, hits in enumerate(res):
            n = len(hits.ids)
            ids[b, :n] = hits.ids
            scores[b, :n] = hits.distances
        return scores, ids

    def flush(self) -> None:
        self._call("flush", self.client.flush, self.collection)

    def load(self) -> None:
        self._call("load collection", self.client.load_collection, self.collection)

    def drop(self) -> None:
        """Remove the collection and its rows (tests, rebuilds)."""
        self._call("drop collection", self.client.drop_collection, self.collection)

    def describe(self) -> dict[str, object]:
        return {"backend": self.kind, "uri": self.uri, "lite": self._local is not None,
                "collection": self.collection, "index": self.index, "metric": "IP", "dim": self._dim,
                "count": self.count(), "fields": self.fields}

    def close(self) -> None:
        """Close the client; for milvus-lite also stop this process's embedded server for the folder, so that
        another process (or a new backend here) can open it and sees only what was flushed. Other backends on the
        same folder in this process lose their connection too: one backend per milvus-lite folder and process."""
        client = getattr(self, "client", None)
        if client is not None:
            try:
                client.close()
            except Exception as e:  # noqa: BLE001 - closing must not mask the error that led here
                log.debug("closing the Milvus client: %s", e)
            self.client = None
        if self._local is not None:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(str(self._local))


def _reason(e: BaseException) -> str:
    """The first line of a pymilvus error, without its ``<ExceptionType: (code=..., message=...)>`` wrapping."""
    text = str(getattr(e, "message", "") or e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]
