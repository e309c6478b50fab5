"""Typed SQLAlchemy 2.0 models of the metadata store, its engine and sessions.

Nothing here knows about torch or FAISS: the store keeps vectors as float32 bytes.
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
