"""The foundation every layer stands on: the metadata store, the settings and the typed errors.

Modules::

    models       typed SQLAlchemy 2.0 models of the metadata store
    base         the declarative base and its constraint naming convention
    database     the engine, sessions and migrations (SQLite or PostgreSQL, by URL)
    store_state  the store's one ``store_state`` row: its identity and the catalog version
    settings     every ``UNIBIND_*`` setting, read once (flag > environment > default)
    errors       the typed errors (invalid input, not found, conflict, busy, unavailable) with their exit codes
                 and HTTP statuses

Nothing here knows about torch or FAISS: the store keeps vectors as float32 bytes.

The names below are imported lazily (PEP 562), on first use: ``import unibind.schema.errors`` (which the
compute layers need) does not import SQLAlchemy, so the engines and the head training run without it.

May import: the standard library, SQLAlchemy and Alembic, and ``unibind.schema`` itself; never
``unibind.indexer``, ``unibind.retrieval`` or ``unibind.migrations``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from unibind.schema.base import Base
    from unibind.schema.database import Database, migrate, resolve_database_url
    from unibind.schema.models import (
        BatchStatus,
        Category,
        Centre,
        CentreMember,
        Corpus,
        CorpusStatus,
        Description,
        Head,
        Item,
        ItemBatch,
        ItemField,
        Job,
        Modality,
        ModalityKind,
        ReaderLease,
        Segment,
        SegmentState,
        Space,
        StoreState,
        Tombstone,
    )

_SOURCES = {
    "Base": "models",  # through models, so Base.metadata holds every table (as before the names were lazy)
    "Database": "database",
    "migrate": "database",
    "resolve_database_url": "database",
    **{name: "models" for name in (
        "BatchStatus", "Category", "Centre", "CentreMember", "Corpus", "CorpusStatus", "Description", "Head", "Item",
        "ItemBatch", "ItemField", "Job", "Modality", "ModalityKind", "ReaderLease", "Segment", "SegmentState", "Space",
        "StoreState", "Tombstone",
    )},
}

__all__ = [
    "Base",
    "BatchStatus",
    "Category",
    "Centre",
    "CentreMember",
    "Corpus",
    "CorpusStatus",
    "Database",
    "Description",
    "Head",
    "Item",
    "ItemBatch",
    "ItemField",
    "Job",
    "Modality",
    "ModalityKind",
    "ReaderLease",
    "Segment",
    "SegmentState",
    "Space",
    "StoreState",
    "Tombstone",
    "migrate",
    "resolve_database_url",
]


def __getattr__(name: str) -> Any:
    module = _SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # cached: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
