"""Where the published versions of a stamped index live: FAISS files in the data folder (the default) or Milvus
collections (``--vectors milvus-lite:PATH`` / ``milvus://host:port``).

Both places publish the same way (``unibind.indexer.index.stamped``): every write makes a *new* version (a file
``<stem>.<unique>.faiss``, or a collection ``ub_<store>_<stem>_<ms>_<unique>``), the store's ``IndexFile`` record
is switched to name it in the publishing transaction, and versions no record names are removed afterwards. A
query therefore sees the version its record names, whole, never half of a write, on either place.

A record keeps ``path``: a path relative to the data folder (a file) or ``milvus:<collection>``. A record of the
other place (an index written with FAISS files, read with ``--vectors milvus…``, or the reverse) is reported as
stale with the command that moves it: ``unibind index rebuild`` (``unibind gallery rebuild``) under the new setting.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from unibind.indexer.index.data_home import DataHome
from unibind.indexer.index.files import sha256_file
from unibind.indexer.index.vector_store import DEFAULT_FACTORY, VectorStore
from unibind.indexer.runtime.device import Device
from unibind.indexer.runtime.vectors import ids_digest
from unibind.schema import IndexFile

MILVUS_PREFIX = "milvus:"  # a record path naming a Milvus collection


class SearchIndex(Protocol):
    """What readers search: a loaded FAISS :class:`VectorStore` or a ``milvus_index.MilvusIndex`` collection."""

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
    """How one index's versions are named: ``stem`` for files (``space-1-items-image``), ``slug`` for collections
    (``s1_items3``: letters, digits and _, unambiguous)."""

    stem: str
    slug: str


@dataclass(frozen=True)
class Written:
    """A version just written: what its record keeps."""

    path: str  # relative to the data folder, or milvus:<collection>
    sha256: str  # the file's digest; for a collection, the digest of its keys and vectors as uploaded
    size: int  # bytes: the file's, or the collection's vectors (n · d · 4)


class IndexPlace(ABC):
    """One kind of home for index versions (see the module docstring)."""

    label: str  # for messages: "FAISS files", "Milvus at …"

    @abstractmethod
    def owns(self, stored: str) -> bool:
        """Whether a record's path names a version of this place."""

    @abstractmethod
    def check_factory(self, factory: str | None, rec: IndexFile | None) -> str:
        """The index type a write uses: ``factory`` when given (validated), else the type of the version ``rec``
        names when it is one of this place's, else the place's default."""

    @abstractmethod
    def memory_factory(self, factory: str) -> str:
        """The FAISS factory of the in-memory index a writer prepares for a version of type ``factory``."""

    # the place keeps each row's scalar fields as columns (Milvus), so a caller must give them to ``write``
    keeps_fields: bool = False

    # the record a publish replaces stays (named, so kept) until the next one: readers on other hosts may still
    # search the version it names (a FAISS reader holds its whole file in memory, so files need no such grace)
    keeps_previous: bool = False

    @abstractmethod
    def write(self, name: IndexName, store: VectorStore, factory: str, ids: np.ndarray,
              columns: Mapping[str, np.ndarray] | None = None) -> Written:
        """Make ``store``'s rows a new durable version of the index ``name`` (named by no record yet); ``ids``:
        ``store.ids()``; ``columns``: the rows' scalar fields aligned with ``ids`` (places that keep them)."""

    @abstractmethod
    def open(self, rec: IndexFile, dim: int, device: Device) -> SearchIndex:
        """The version ``rec`` names, ready to search."""

    @abstractmethod
    def problems(self, rec: IndexFile, dim: int) -> list[str]:
        """Cheap checks of the version ``rec`` names (it exists, its size or count)."""

    @abstractmethod
    def contents(self, rec: IndexFile, dim: int, device: Device) -> tuple[np.ndarray | None, list[str]]:
        """The full check of a version: (its keys, or None when unreadable; what is wrong with it)."""

    @abstractmethod
    def unnamed(self, name: IndexName, records: list[IndexFile]) -> list[str]:
        """Versions of the index ``name`` here that none of its ``records`` (newest first) names: what superseded
        or failed writes left, which may go (see ``remove``)."""

    @abstractmethod
    def remove(self, names: list[str]) -> None:
        """Remove versions ``unnamed`` listed."""

    def describe(self, rec: IndexFile | None) -> str:
        """Where the version ``rec`` names is, for people."""
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

    def check_factory(self, factory: str | None, rec: IndexFile | None) -> str:
        if factory:
            return factory  # make_index validates it when the in-memory index is made
        return rec.factory if rec is not None and self.owns(rec.path) else DEFAULT_FACTORY

    def memory_factory(self, factory: str) -> str:
        return factory

    def write(self, name: IndexName, store: VectorStore, factory: str, ids: np.ndarray,
              columns: Mapping[str, np.ndarray] | None = None) -> Written:
        import uuid

        path = self.folder / f"{name.stem}.{uuid.uuid4().hex[:16]}.faiss"
        digest, size = store.save(path)  # durable, rename included, before the record names it
        return Written(self.data.relative(path), digest, size)

    def open(self, rec: IndexFile, dim: int, device: Device) -> SearchIndex:
        return VectorStore.load(self.data.resolve(rec.path), device, rec.factory)

    def problems(self, rec: IndexFile, dim: int) -> list[str]:
        path = self.data.resolve(rec.path)
        if not path.is_file():
            return [f"index file {rec.path} is missing"]
        if path.stat().st_size != rec.file_size:
            return [f"index file {rec.path} has {path.stat().st_size} bytes, the record says {rec.file_size}"]
        return []

    def contents(self, rec: IndexFile, dim: int, device: Device) -> tuple[np.ndarray | None, list[str]]:
        path = self.data.resolve(rec.path)
        if not path.is_file():
            return None, []  # problems() said so
        problems = []
        if sha256_file(path) != rec.file_sha256:
            problems.append("file digest differs from the one recorded when it was written")
        try:
            return VectorStore.load(path, device, rec.factory).ids(), problems
        except ValueError as e:
            return None, [*problems, str(e)]

    def files(self, stem: str, rec: IndexFile | None) -> list[Path]:
        if not self.folder.is_dir():
            return []
        named = self.data.resolve(rec.path).name if rec is not None and self.owns(rec.path) else None
        found = [*self.folder.glob(f"{stem}.*.faiss"), *self.folder.glob(f".{stem}.*.tmp"), self.folder / f"{stem}.faiss"]
        return sorted(p for p in found if p.is_file() and p.name != named)

    def unnamed(self, name: IndexName, records: list[IndexFile]) -> list[str]:
        """Superseded files, temp files of writes that failed or were killed, a file of the older fixed name."""
        return [p.name for p in self.files(name.stem, records[0] if records else None)]

    def remove(self, names: list[str]) -> None:
        for name in names:
            (self.folder / name).unlink(missing_ok=True)

    def sync(self) -> None:
        from unibind.indexer.index.files import fsync_dir

        if self.folder.is_dir():
            fsync_dir(self.folder)

    def describe(self, rec: IndexFile | None) -> str:
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
