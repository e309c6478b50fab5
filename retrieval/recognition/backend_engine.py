"""Exact recognition over any vector backend (FAISS files, Milvus): the centre members live in a
:class:`~unibind.indexer.index.backend.VectorBackend` (key = member row, scalar field ``category`` = the owner's
category position) and nomination searches it, so the members can sit in a Milvus server shared by replicas.

The nomination is the FAISS engine's, unchanged (:class:`FaissEngine` ``_nominate`` / ``_nominate_top_m``); only
the index it searches differs. For top_m = 1 a query fetches its (k - 1)·M + 1 nearest members (M = the largest
centre among the allowed categories, capped at their member count): by the pigeonhole principle they span at least
k categories, and a category's first hit is its best member, so the k-th distinct category's first hit is the k-th
best category score T; every hit >= T - tol is nominated, and when the last fetched hit is still >= T - tol the
query fetches twice as many. For top_m > 1 the fetched hits bound each category's mean of its m best, partly seen
categories that may reach the k-th best are rescored from the table, and the fetch doubles until no unseen
category can reach it. :func:`~unibind.retrieval.recognition.engine.score_nominated` then scores exactly.

Exact when the backend's search is exact (FAISS Flat, Milvus FLAT). Label subsets are a filter
``category in [allowed]`` on the backend's scalar column (rows of other categories never come back).
Milvus's grouping search (``group_by_field``) is deliberately not used: it is not exact (it may return a
category's second-best member or miss a category), and the pigeonhole fetch needs only a plain top-k.
"""

from __future__ import annotations

import hashlib
import logging
import time

import numpy as np

from unibind.indexer.index.backend import Filter, VectorBackend
from unibind.indexer.index.exact import exact_knn
from unibind.indexer.runtime.device import Device
from unibind.retrieval.recognition.engine import CentreTable
from unibind.retrieval.recognition.faiss_engine import FaissEngine
from unibind.schema.errors import Conflict, InvalidInput

log = logging.getLogger(__name__)

CATEGORY = "category"  # the backend's int64 field holding each member's category position
KEEP_CENTRE_COLLECTIONS = 4  # centre collections of other tables a new one leaves in place (specs, replicas)


class BackendView:
    """A backend seen as the FAISS engine's index: ``search(q, k)`` among the table's member ``rows`` (those that
    pass ``filter``); a hole in the answer means the backend lost rows. A fetch beyond the backend's
    :attr:`~VectorBackend.max_k` (a Milvus server answers at most 16,384 hits; recognition's over-fetch on very
    large centres can ask for more) is answered by an exact float32 search of the same rows in the centre table,
    which the engine holds anyway: the same hits, in the same order of scores."""

    def __init__(self, backend: VectorBackend, filter: Filter | None, rows: np.ndarray, table: CentreTable) -> None:
        self.backend, self.filter, self.rows, self.table = backend, filter, rows, table
        self.n_rows = len(rows)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.backend.max_k is not None and k > self.backend.max_k:
            return self._local(queries, k)
        scores, ids = self.backend.search(queries, k, self.filter)
        if (ids < 0).any():
            kind = self.backend.describe().get("backend")
            raise Conflict(f"the {kind} backend returned fewer than {k} of the table's {self.n_rows} centre members; "
                           "it does not hold the whole centre table: repopulate it")
        return scores, ids

    def _local(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The top ``k`` of ``rows`` by inner product, best first."""
        log.debug("fetch of %d exceeds the backend's %d hits per search: searching the table", k, self.backend.max_k)
        q = np.asarray(queries, dtype=np.float32)
        return exact_knn(q, self.rows, self.table.vectors[self.rows], int(k))


def populate(backend: VectorBackend, table: CentreTable) -> None:
    """Put ``table``'s members into ``backend`` (key = member row, ``category`` = owner) and flush; the backend
    must then hold exactly those rows."""
    backend.upsert(np.arange(table.n_members, dtype=np.int64), table.vectors, {CATEGORY: table.owner})
    backend.flush()
    n = backend.count()
    if n != table.n_members:
        raise Conflict(f"the vector backend holds {n} rows after loading the {table.n_members} centre members; "
                       "give recognition an empty collection of its own")


class BackendEngine(FaissEngine):
    """The FAISS engine's exact nomination over a :class:`VectorBackend` holding the table's members."""

    name = "backend"

    def __init__(self, table: CentreTable, device: Device, backend: VectorBackend, *, top_m: int = 1,
                 fill: bool = True) -> None:
        if backend.dim != table.dim:
            raise InvalidInput(f"the vector backend has dimension {backend.dim}; the centre table {table.dim}")
        if backend.fields.get(CATEGORY) != "int64":
            raise InvalidInput(f"the vector backend needs an int64 field {CATEGORY!r} (the member's category "
                               f"position); it has {backend.fields}")
        self.backend = backend  # before FaissEngine.__init__, which builds the "index" through _build
        if fill:
            populate(backend, table)
        super().__init__(table, device, top_m=top_m)

    def _build(self, rows: np.ndarray) -> BackendView:  # type: ignore[override]
        """All members: the backend itself, no filter (FaissEngine.__init__ calls this with every row)."""
        return BackendView(self.backend, None, np.asarray(rows, dtype=np.int64), self.table)

    def _subset_store(self, allowed: np.ndarray) -> BackendView:  # type: ignore[override]
        """The allowed categories' members: a ``category in [...]`` filter on the backend."""
        rows = np.flatnonzero(np.isin(self.table.owner, allowed)).astype(np.int64)
        return BackendView(self.backend, Filter.isin(CATEGORY, allowed), rows, self.table)


def table_digest(table: CentreTable) -> str:
    """16 hex digits naming a centre table's content: names, owners and member vectors (centred or not)."""
    h = hashlib.sha256("\x1f".join(table.names).encode())
    h.update(np.ascontiguousarray(table.owner, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(table.vectors, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def milvus_centres(uri: str, store_id: str, space_id: int, table: CentreTable) -> tuple[VectorBackend, bool]:
    """The Milvus collection holding ``table``'s members, shared by every process (replica) that recognises with
    the same table: ``ub_<store>_s<space>_centres_<ms>_<table digest>``. Returns (backend, whether it must be
    filled). A collection of this digest is reused; one that holds fewer rows than the table (a fill still running
    in another replica, or one that was killed) is filled again here: an upsert of the same keys and vectors, so
    two fillers never undo each other. A new collection keeps the space's KEEP_CENTRE_COLLECTIONS newest others
    (other centre specs in use, replicas on the previous table) and drops the rest; a recogniser whose collection
    was dropped makes it again (``Recognizer``)."""
    from unibind.indexer.index.milvus_backend import MilvusBackend
    from unibind.indexer.index.milvus_index import collection_prefix

    head = f"{collection_prefix(store_id)}s{space_id}_centres_"
    digest = table_digest(table)
    fields = {CATEGORY: "int64"}
    probe = MilvusBackend(uri, None, table.dim, shared=True)  # the process's connection, for listing and dropping
    found = [c for c in probe.collections(head) if c.endswith(f"_{digest}")]
    if found:
        backend = MilvusBackend(uri, found[0], table.dim, fields=fields, create=False, shared=True)
        complete = backend.count() == table.n_members
        log.info("recognition %s Milvus collection %s (%d centre members)",
                 "reuses" if complete else "completes", found[0], table.n_members)
        return backend, not complete
    name = f"{head}{int(time.time() * 1000):013d}_{digest}"
    try:
        backend = MilvusBackend(uri, name, table.dim, fields=fields, create=True, shared=True)
    except Conflict:
        if not any(c.endswith(f"_{digest}") for c in probe.collections(head)):
            raise
        # another replica created one of this table at the same moment: fill that one too (idempotent)
        return milvus_centres(uri, store_id, space_id, table)
    others = sorted((c for c in probe.collections(head) if c != name), reverse=True)  # newest first (ms in the name)
    for old in others[KEEP_CENTRE_COLLECTIONS:]:
        probe.drop_collection(old)
    return backend, True
