"""Where the segments of an index live: FAISS files in the data folder (the default) or Milvus collections
(``--vectors milvus-lite:PATH`` / ``milvus://host:port``).

A segment's payload is written once and never changed (``unibind.indexer.index.segments``): a file
``<stem>.<unique>.faiss``, or the rows of one segment token in the index's Milvus collection
(``unibind.indexer.index.milvus_index``). Its ``Segment`` record names it (``path``: relative to the data folder,
or ``milvus:<collection>#<token>``) before it is written. A file that no record names is debris that any writer
may remove; a segment's rows in Milvus are removed before its record goes (``removes_first``). A record of the other place (an index written with FAISS files, read
with ``--vectors milvus…``, or the reverse) is reported as stale with the command that moves it: ``unibind index
rebuild`` (``unibind gallery rebuild``) under the new setting.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from unibind.indexer.index.data_home import DataHome
from unibind.indexer.index.files import sha256_file
from unibind.indexer.index.vector_store import DEFAULT_FACTORY, VectorStore, training_size
from unibind.indexer.runtime.device import Device
from unibind.indexer.runtime.vectors import ids_digest
from unibind.schema import Segment

MILVUS_PREFIX = "milvus:"  # a record path naming a Milvus collection


class SearchIndex(Protocol):
    """One segment's payload, ready to search (readers search a ``fanout.SegmentSet`` of them): a loaded FAISS
    :class:`VectorStore` or a ``milvus_index.MilvusIndex`` collection."""

    factory: str

    @property
    def dim(self) -> int: ...

    @property
    def ntotal(self) -> int: ...

    @property
    def is_ivf(self) -> bool: ...

    def tune(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None: ...

    def ids(self) -> np.ndarray: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def search_subset(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class IndexName:
    """How one index's segment payloads are named: ``stem`` for files (``space-1-items-image``), ``slug`` for collections
    (``s1_items3``: letters, digits and _, unambiguous)."""

    stem: str
    slug: str


@dataclass(frozen=True)
class Written:
    """A segment payload just written: what its record keeps."""

    path: str  # relative to the data folder, or milvus:<collection>
    sha256: str  # the file's digest; for a collection, the digest of its keys and vectors as uploaded
    size: int  # bytes: the file's, or the collection's vectors (n · d · 4)


class IndexPlace(ABC):
    """One kind of home for segment payloads (see the module docstring)."""

    label: str  # for messages: "FAISS files", "Milvus at …"

    # the place keeps each row's scalar fields as columns (Milvus), so a caller must give them to ``write``
    keeps_fields: bool = False
    # a segment's payload is removed before its record is forgotten (Milvus: rows are never listed to find debris)
    removes_first: bool = False

    @abstractmethod
    def owns(self, stored: str) -> bool:
        """Whether a record's path names a payload of this place."""

    @abstractmethod
    def check_factory(self, factory: str | None, current: str | None) -> str:
        """The index type a write uses: ``factory`` when given (validated), else ``current`` (the type the index
        was configured with here; None when new or recorded in the other place), else the place's default."""

    @abstractmethod
    def memory_factory(self, factory: str) -> str:
        """The FAISS factory of the in-memory index a writer prepares for a payload of type ``factory``."""

    @abstractmethod
    def segment_factory(self, factory: str, dim: int, n: int) -> str:
        """The type a segment of ``n`` vectors of an index configured as ``factory`` is built as: that type, or the
        place's flat type when the segment is too small to train it well (fewer than 39 vectors per IVF list)."""

    @abstractmethod
    def new_path(self, name: IndexName, factory: str, current: Sequence[str] = (), fresh: bool = False) -> str:
        """A record path no payload has used yet, for a new segment of type ``factory`` of the index ``name``;
        ``current``: the paths of its live segments, oldest first; ``fresh``: a rebuild (a place that shares a
        container between segments starts a new one)."""

    @abstractmethod
    def write(self, path: str, store: VectorStore, factory: str, ids: np.ndarray,
              columns: Mapping[str, np.ndarray] | None = None) -> Written:
        """Make ``store``'s rows the durable payload ``path`` (which ``new_path`` gave); ``ids``: ``store.ids()``;
        ``columns``: the rows' scalar fields aligned with ``ids`` (places that keep them)."""

    @abstractmethod
    def open(self, rec: Segment, dim: int, device: Device, factory: str) -> SearchIndex:
        """The payload ``rec`` names (built as ``factory``), ready to search."""

    @abstractmethod
    def problems(self, rec: Segment, dim: int) -> list[str]:
        """Cheap checks of the payload ``rec`` names (it exists, its size or count)."""

    @abstractmethod
    def contents(self, rec: Segment, dim: int, device: Device, factory: str) -> tuple[np.ndarray | None, list[str]]:
        """The full check of a payload: (its keys, or None when unreadable; what is wrong with it)."""

    @abstractmethod
    def listing(self, name: IndexName) -> list[tuple[str, str]]:
        """Every payload of the index ``name`` here, written or being written, as (what ``remove`` takes, the
        record path that names it)."""

    @abstractmethod
    def remove(self, payloads: list[str]) -> None:
        """Remove payloads ``listing`` gave."""

    def listing_key(self, stored: str) -> str:
        """The ``listing`` path that the record path ``stored`` keeps from removal."""
        return stored

    def shared_by(self, stored: str) -> str | None:
        """The record-path prefix of the other segments whose container the payload ``stored`` shares, or None."""
        return None

    def strays(self, index: IndexName, named: Callable[[], Sequence[str]]) -> list[str]:
        """``index verify``: what this place holds of the index that no record names (rows of a shared container);
        ``named`` reads the record paths of the index (called after the place was read)."""
        return []

    def remove_recorded(self, paths: Sequence[str], index: IndexName, dim: int) -> None:
        """Remove the payloads that the record paths ``paths`` of the index ``index`` name."""
        wanted = set(paths)
        self.remove([payload for payload, path in self.listing(index) if path in wanted])

    def describe(self, rec: Segment | None) -> str:
        """Where the payload ``rec`` names is, for people."""
        return rec.path if rec is not None else "nothing yet"

    def sync(self) -> None:
        """After ``remove``: make the removals durable."""


class FilePlace(IndexPlace):
    """FAISS files in the store's index folder (``$UNIBIND_HOME/indexes/<store id>/``)."""

    label = "FAISS files"

    def __init__(self, data: DataHome) -> None:
        self.data = data
        self.folder = data.index_dir

    def owns(self, stored: str) -> bool:
        return not stored.startswith(MILVUS_PREFIX)

    def check_factory(self, factory: str | None, current: str | None) -> str:
        if factory:
            return factory  # make_index validates it when the in-memory index is made
        return current or DEFAULT_FACTORY

    def memory_factory(self, factory: str) -> str:
        return factory

    def segment_factory(self, factory: str, dim: int, n: int) -> str:
        return factory if n >= training_size(dim, factory) else DEFAULT_FACTORY

    def new_path(self, name: IndexName, factory: str = DEFAULT_FACTORY, current: Sequence[str] = (),
                 fresh: bool = False) -> str:
        import uuid

        return self.data.relative(self.folder / f"{name.stem}.{uuid.uuid4().hex[:16]}.faiss")

    def write(self, path: str, store: VectorStore, factory: str, ids: np.ndarray,
              columns: Mapping[str, np.ndarray] | None = None) -> Written:
        digest, size = store.save(self.data.resolve(path))  # durable, rename included, before it is published
        return Written(path, digest, size)

    def open(self, rec: Segment, dim: int, device: Device, factory: str) -> SearchIndex:
        return VectorStore.load(self.data.resolve(rec.path), device, factory)

    def problems(self, rec: Segment, dim: int) -> list[str]:
        path = self.data.resolve(rec.path)
        if not path.is_file():
            return [f"index file {rec.path} is missing"]
        if path.stat().st_size != rec.file_size:
            return [f"index file {rec.path} has {path.stat().st_size} bytes, the record says {rec.file_size}"]
        return []

    def contents(self, rec: Segment, dim: int, device: Device, factory: str) -> tuple[np.ndarray | None, list[str]]:
        path = self.data.resolve(rec.path)
        if not path.is_file():
            return None, []  # problems() said so
        problems = []
        if sha256_file(path) != rec.file_sha256:
            problems.append(f"index file {rec.path}: digest differs from the one recorded when it was written")
        try:
            return VectorStore.load(path, device, factory).ids(), problems
        except ValueError as e:
            return None, [*problems, str(e)]

    def listing(self, name: IndexName) -> list[tuple[str, str]]:
        """Segment files, temporary files of writes under way or killed (``.<file>.<random>.tmp``, named by the
        record of the file they become), and a file of the older fixed name."""
        if not self.folder.is_dir():
            return []
        found = []
        for p in self.folder.iterdir():
            target = p.name
            if target.startswith(".") and target.endswith(".tmp"):
                target = target[1:].rsplit(".", 2)[0]  # .<stem>.<hex>.faiss.<random>.tmp -> <stem>.<hex>.faiss
            if target == f"{name.stem}.faiss" or (target.startswith(f"{name.stem}.") and target.endswith(".faiss")
                                                  and target.count(".") == 2):
                found.append((p.name, self.data.relative(self.folder / target)))
        return sorted(found)

    def remove(self, payloads: list[str]) -> None:
        for name in payloads:
            (self.folder / name).unlink(missing_ok=True)

    def sync(self) -> None:
        from unibind.indexer.index.files import fsync_dir

        if self.folder.is_dir():
            fsync_dir(self.folder)

    def describe(self, rec: Segment | None) -> str:
        return str(self.data.resolve(rec.path)) if rec is not None else "no file yet"


def place_for(data: DataHome, vectors: str | None, fields: Mapping[str, str] | None = None) -> IndexPlace:
    """The place the ``--vectors`` setting names: FAISS files when absent or ``faiss``, else Milvus, whose
    collections carry ``fields`` (``{name: "int64" | "str"}``) as scalar columns."""
    from unibind.schema.settings import parse_vectors_spec

    spec = parse_vectors_spec(vectors)
    if spec.kind == "faiss":
        return FilePlace(data)
    from unibind.indexer.index.milvus_index import MilvusPlace

    return MilvusPlace(spec, data.store_id, fields or {})


def check_factory(data: DataHome, vectors: str | None, dim: int, factory: str) -> str:
    """``--factory`` checked for the place ``vectors`` names before any work (encoding): a Milvus index type, or a
    FAISS factory string that makes an index of dimension ``dim``. Returns it as the place spells it."""
    from unibind.indexer.index.vector_store import make_index

    place = place_for(data, vectors)
    kind = place.check_factory(factory, None)
    make_index(dim, place.memory_factory(kind))
    return kind


def content_digest(ids: np.ndarray, vectors: np.ndarray) -> str:
    """The digest a collection's record keeps: its keys (sorted) and their vectors, as uploaded."""
    import hashlib

    order = np.argsort(ids, kind="stable")
    h = hashlib.sha256(ids_digest(ids).encode())
    h.update(np.ascontiguousarray(vectors[order], dtype=np.float32).tobytes())
    return h.hexdigest()


__all__ = ["FilePlace", "IndexName", "IndexPlace", "MILVUS_PREFIX", "SearchIndex", "Written", "check_factory",
           "content_digest", "place_for"]
