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

May import: the standard library, SQLAlchemy and Alembic, and ``unibind.schema`` itself; never
``unibind.indexer``, ``unibind.retrieval`` or ``unibind.migrations``.
"""

from unibind.schema.base import Base
from unibind.schema.database import Database, migrate, resolve_database_url
from unibind.schema.models import (
    Category,
    Centre,
    CentreMember,
    Corpus,
    CorpusStatus,
    Description,
    Head,
    IndexFile,
    Item,
    ItemField,
    Job,
    Modality,
    ModalityKind,
    Space,
    StoreState,
)

__all__ = [
    "Base",
    "Category",
    "Centre",
    "CentreMember",
    "Corpus",
    "CorpusStatus",
    "Database",
    "Description",
    "Head",
    "IndexFile",
    "Item",
    "ItemField",
    "Job",
    "Modality",
    "ModalityKind",
    "Space",
    "StoreState",
    "migrate",
    "resolve_database_url",
]
