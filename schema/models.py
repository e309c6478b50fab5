"""The metadata store: spaces, corpora, categories, descriptions, gallery items and the index segments derived
from them.

A description's primary key is its FAISS id, and an item's its id in its gallery index: there is no second id
space (docs/store.md).
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Enum,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.sql import expression

from unibind.schema.base import Base

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT (FAISS ids are int64).
BigId = BigInteger().with_variant(Integer(), "sqlite")
# Ids are never reused: on SQLite a table needs AUTOINCREMENT for that (without it, deleting the newest rows
# hands their ids to the next ones); PostgreSQL's sequences never go back.
NO_REUSE: dict[str, Any] = {"sqlite_autoincrement": True}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class CorpusStatus(str, enum.Enum):
    """A corpus is visible to queries only when ``complete``. ``ingesting`` rows belong to a running ingest
    (its ``owner`` and ``heartbeat_at`` say which and whether it still lives); one whose owner died is shown as
    ``interrupted`` and removed by the next writer. A ``deleted`` corpus (deleted or replaced at
    ``deleted_version``) keeps its rows for readers pinned to an older catalog version until the vacuum removes
    them; its name is then ``~deleted-<id>`` and the name it had is in ``target_name``."""

    INGESTING = "ingesting"
    COMPLETE = "complete"
    DELETED = "deleted"


class Space(Base):
    """One embedding space: the text encoder that defines it and its dimension."""

    __tablename__ = "spaces"
    __table_args__ = NO_REUSE

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    encoder: Mapped[str] = mapped_column(String(512), unique=True)
    dim: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    corpora: Mapped[list[Corpus]] = relationship(back_populates="space")


class Corpus(Base):
    """One ingested file of descriptions, with its source (which LLM, which prompt)."""

    __tablename__ = "corpora"
    __table_args__ = (UniqueConstraint("space_id", "name"), NO_REUSE)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    source: Mapped[str | None] = mapped_column(Text)
    origin: Mapped[str | None] = mapped_column(Text)  # file path (or builtin name) it was read from
    file_sha256: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[CorpusStatus] = mapped_column(
        Enum(CorpusStatus, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]),
        default=CorpusStatus.INGESTING,
    )
    n_descriptions: Mapped[int] = mapped_column(Integer, default=0)
    n_duplicates: Mapped[int] = mapped_column(Integer, default=0)
    n_categories: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # while ingesting: the name it will be published under, the process writing it and its last sign of life
    target_name: Mapped[str | None] = mapped_column(String(200))
    owner: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_space: Mapped[bool] = mapped_column(Boolean, default=False, server_default=expression.false())
    # the catalog versions that published and deleted it: a reader at version v sees it when
    # published_version <= v < deleted_version (unibind.schema.versions)
    published_version: Mapped[int | None] = mapped_column(BigInteger)
    deleted_version: Mapped[int | None] = mapped_column(BigInteger)

    space: Mapped[Space] = relationship(back_populates="corpora")


class Category(Base):
    """A class name. Shared by all spaces and corpora: descriptions point at it."""

    __tablename__ = "categories"
    __table_args__ = NO_REUSE

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(500), unique=True)


class Description(Base):
    """One sentence of the knowledge base. ``id`` is its FAISS id; ``vector`` holds float32 bytes."""

    __tablename__ = "descriptions"
    __table_args__ = (UniqueConstraint("corpus_id", "category_id", "text_hash"), NO_REUSE)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    corpus_id: Mapped[int] = mapped_column(ForeignKey("corpora.id", ondelete="CASCADE"), index=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    text_hash: Mapped[str] = mapped_column(String(40), index=True)  # sha1 of the normalised text
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    vector: Mapped[bytes] = mapped_column(LargeBinary)

    category: Mapped[Category] = relationship()
    corpus: Mapped[Corpus] = relationship()


class SegmentState(str, enum.Enum):
    """``building``: a writer registered it and is writing its payload (``owner`` and ``heartbeat_at`` say who and
    whether it still lives); ``live``: published at ``created_version``, until ``dropped_version`` when set."""

    BUILDING = "building"
    LIVE = "live"


class Segment(Base):
    """One immutable segment of an index (``kind``: ``descriptions`` of a space, or ``items:<modality id>``): a
    payload written once (a FAISS file whose ``path`` is relative to the data folder, or ``milvus:<collection>``)
    and what it holds, so a stale or foreign payload is detected. A reader at catalog version v searches the live
    segments with ``created_version <= v < dropped_version`` and leaves out the rows their tombstones name.

    A segment is registered (``building``) before its payload is written, so a payload no record names is debris.
    ``factory`` is the index type the index was configured with (a segment too small for it is built flat);
    ``group_ids`` the write groups whose rows it holds, whole: corpora (descriptions) or gallery batches (items),
    so the one live segment that holds a row is known from the row's group; ``replaced_by`` the segment a compaction
    or rebuild merged it into."""

    __tablename__ = "segments"
    __table_args__ = (Index("ix_segments_space_id_kind", "space_id", "kind"), NO_REUSE)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))  # "descriptions", "items:<modality id>"
    state: Mapped[SegmentState] = mapped_column(
        Enum(SegmentState, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]),
        default=SegmentState.BUILDING,
    )
    path: Mapped[str] = mapped_column(Text)
    factory: Mapped[str] = mapped_column(String(200))
    n_vectors: Mapped[int] = mapped_column(BigInteger, default=0)
    ids_sha256: Mapped[str] = mapped_column(String(64), default="")  # digest of the sorted int64 ids it holds
    file_sha256: Mapped[str] = mapped_column(String(64), default="")
    file_size: Mapped[int] = mapped_column(BigInteger, default=0)
    group_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    created_version: Mapped[int | None] = mapped_column(BigInteger)
    dropped_version: Mapped[int | None] = mapped_column(BigInteger)
    replaced_by: Mapped[int | None] = mapped_column(Integer)
    owner: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Tombstone(Base):
    """A row deleted at ``version`` that segment ``segment_id`` still holds: readers at that version or later leave
    it out of the segment's hits; a compaction leaves it out of the merged segment. It goes with its segment."""

    __tablename__ = "tombstones"

    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True)
    row_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


class Centre(Base):
    """A category's embedding centre: its top-K descriptions for one base prompt, K and strategy.

    Keyed by the corpora it was drawn from (``corpora_key``: sorted corpus ids, comma-joined), so a
    centre is reused while nothing changed; ingesting, replacing or deleting a corpus of the category
    deletes its centres.
    """

    __tablename__ = "centres"
    __table_args__ = (
        UniqueConstraint("space_id", "category_id", "template", "k", "strategy", "corpora_key", name="uq_centres_key"),
        NO_REUSE,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id", ondelete="CASCADE"), index=True)
    template: Mapped[str] = mapped_column(String(500))
    k: Mapped[int] = mapped_column(Integer)
    strategy: Mapped[str] = mapped_column(String(32))
    corpora_key: Mapped[str] = mapped_column(String(500))
    n_candidates: Mapped[int] = mapped_column(Integer)  # descriptions the category had to choose from
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    category: Mapped[Category] = relationship()
    members: Mapped[list[CentreMember]] = relationship(
        back_populates="centre", order_by="CentreMember.rank", cascade="all, delete-orphan", passive_deletes=True
    )


class CentreMember(Base):
    """One vector of a centre: a description (``description_id``) or a synthetic prompt vector."""

    __tablename__ = "centre_members"
    __table_args__ = NO_REUSE

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    centre_id: Mapped[int] = mapped_column(ForeignKey("centres.id", ondelete="CASCADE"), index=True)
    description_id: Mapped[int | None] = mapped_column(ForeignKey("descriptions.id", ondelete="CASCADE"))
    rank: Mapped[int] = mapped_column(Integer)  # 1 = closest to the base prompt
    score: Mapped[float] = mapped_column(Float)  # cosine to the base prompt
    text: Mapped[str] = mapped_column(Text)  # the description, or what the synthetic vector stands for
    vector: Mapped[bytes] = mapped_column(LargeBinary)

    centre: Mapped[Centre] = relationship(back_populates="members")


class ModalityKind(str, enum.Enum):
    """How a modality's inputs become vectors: the space's text encoder, an image tower, or vectors
    computed elsewhere by a frozen encoder (ImageBind, PointBind, CLAP, ...)."""

    TEXT = "text"
    IMAGE = "image"
    FEATURES = "features"


class Modality(Base):
    """A modality of a space and the dimension of its encoder's output (the head's input)."""

    __tablename__ = "modalities"
    __table_args__ = (UniqueConstraint("space_id", "name"), NO_REUSE)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[ModalityKind] = mapped_column(
        Enum(ModalityKind, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])
    )
    input_dim: Mapped[int] = mapped_column(Integer)
    encoder: Mapped[str | None] = mapped_column(String(512))  # image: the tower's spec; features: who made them
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    space: Mapped[Space] = relationship()


class Head(Base):
    """One trained version of a modality's head ``Linear(input_dim, space dim)``; at most one is active."""

    __tablename__ = "heads"
    __table_args__ = (
        UniqueConstraint("modality_id", "version"),
        Index(
            "uq_heads_one_active",
            "modality_id",
            unique=True,
            sqlite_where=expression.text("active"),
            postgresql_where=expression.text("active"),
        ),
        NO_REUSE,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    modality_id: Mapped[int] = mapped_column(ForeignKey("modalities.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)  # the safetensors file, relative to the data folder
    file_sha256: Mapped[str] = mapped_column(String(64))
    d_in: Mapped[int] = mapped_column(Integer)
    d_out: Mapped[int] = mapped_column(Integer)
    hyperparams: Mapped[dict[str, Any]] = mapped_column(JSON)
    data_sha256: Mapped[str] = mapped_column(String(64))  # the features, descriptions and pairing trained on
    n_pairs: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)  # validation R@1, loss, epochs, ...
    active: Mapped[bool] = mapped_column(Boolean, default=False, server_default=expression.false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    modality: Mapped[Modality] = relationship()


class BatchStatus(str, enum.Enum):
    PENDING = "pending"
    COMPLETE = "complete"


class ItemBatch(Base):
    """One gallery add: its items become visible together, at ``published_version``, when the batch turns
    ``complete`` (a pending batch's ``owner`` and ``heartbeat_at`` say who writes it and whether it still lives; one
    whose owner died is removed, items and all, by the next writer)."""

    __tablename__ = "item_batches"
    __table_args__ = NO_REUSE

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    modality_id: Mapped[int] = mapped_column(ForeignKey("modalities.id", ondelete="CASCADE"), index=True)
    status: Mapped[BatchStatus] = mapped_column(
        Enum(BatchStatus, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]),
        default=BatchStatus.PENDING,
    )
    published_version: Mapped[int | None] = mapped_column(BigInteger)
    owner: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Item(Base):
    """A gallery entry of any modality. ``id`` is its FAISS id in the modality's gallery index; ``vector``
    is its embedding in the space (through the head), ``raw`` the encoder's output it was projected from. It is
    visible from its batch's ``published_version`` until ``deleted_version`` (unibind.schema.versions)."""

    __tablename__ = "items"
    __table_args__ = (
        Index("ix_items_modality_id_label", "modality_id", "label"),
        Index("ix_items_deleted_version", "deleted_version", sqlite_where=expression.text("deleted_version IS NOT NULL"),
              postgresql_where=expression.text("deleted_version IS NOT NULL")),
        NO_REUSE,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    modality_id: Mapped[int] = mapped_column(ForeignKey("modalities.id", ondelete="CASCADE"))
    uri: Mapped[str | None] = mapped_column(Text)
    label: Mapped[str | None] = mapped_column(String(500))
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    head_id: Mapped[int | None] = mapped_column(ForeignKey("heads.id", ondelete="SET NULL"))  # None: zero-shot
    batch_id: Mapped[int] = mapped_column(ForeignKey("item_batches.id", ondelete="CASCADE"), index=True)
    deleted_version: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    modality: Mapped[Modality] = relationship()


class ItemField(Base):
    """One scalar metadata field of an item as canonical text (strings as they are, numbers and booleans
    as JSON writes them), indexed so ``--where key=value`` filters are one index lookup."""

    __tablename__ = "item_fields"
    __table_args__ = (Index("ix_item_fields_key_value", "key", "value"),)

    item_id: Mapped[int] = mapped_column(BigId, ForeignKey("items.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(String(500))


class StoreState(Base):
    """The store's one row: its identity (a UUID made when the store was created, which names its folders under
    ``$UNIBIND_HOME`` whatever URL reaches it) and the catalog version, a counter bumped in the same transaction
    as every publish (ingest, replace, delete, gallery change, head activation, centre build). Caches compare the
    version; every publishing transaction updates this row first, which also serialises publishers."""

    __tablename__ = "store_state"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    store_id: Mapped[str] = mapped_column(String(36))
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    # the vacuum removed what readers at versions below this could see: such a reader refreshes first
    horizon: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class ReaderLease(Base):
    """A long-lived reader (a service process) and the oldest catalog version it still answers from: the vacuum
    keeps what that version can see while the lease lives (``owner`` and ``heartbeat_at``, as an ingest's)."""

    __tablename__ = "reader_leases"
    __table_args__ = NO_REUSE

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(BigInteger)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Job(Base):
    """A background ingest started through the service: kept in the store, so its state outlives the process
    (a job whose process died reads as ``interrupted``)."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # "ingest"
    corpus: Mapped[str] = mapped_column(String(200))
    space: Mapped[str | None] = mapped_column(String(512))  # the encoder spec
    state: Mapped[str] = mapped_column(String(16), index=True)  # queued, running, done, failed, interrupted
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
