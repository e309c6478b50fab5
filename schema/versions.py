"""What a reader at catalog version ``v`` sees: the multi-version rules of the store, as SQL predicates.

Every publish bumps the catalog version (``unibind.schema.store_state``) and stamps what it changed with the new
version instead of rewriting it in place:

- a corpus is visible from ``published_version`` (when it turned complete) until ``deleted_version`` (when it was
  deleted or replaced): ``published_version <= v < deleted_version``;
- a gallery item is visible from its batch's ``published_version`` until its own ``deleted_version``;
- an index segment is searched from ``created_version`` until ``dropped_version``, less its tombstones of
  ``version <= v``.

The *current* state is the same rule at the newest version, which the ``live_*`` predicates spell without a
version. Rows no reader can see any more are removed by the vacuum (``unibind.indexer.store.vacuum``), which moves
the store's *horizon*: a reader whose version fell below it refreshes before it answers.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, case, or_, select

from unibind.schema.models import (BatchStatus, Corpus, CorpusStatus, Item, ItemBatch, Segment, SegmentState)

__all__ = ["corpus_name", "corpus_visible", "item_visible", "live_corpus", "live_item", "segment_visible"]


def corpus_visible(version: int | None) -> ColumnElement[bool]:
    """The corpora a reader at ``version`` sees (None: the current state: complete corpora)."""
    if version is None:
        return live_corpus()
    return and_(Corpus.status.in_([CorpusStatus.COMPLETE, CorpusStatus.DELETED]),
                Corpus.published_version <= version,
                or_(Corpus.deleted_version.is_(None), Corpus.deleted_version > version))


def live_corpus() -> ColumnElement[bool]:
    return Corpus.status == CorpusStatus.COMPLETE


def corpus_name() -> ColumnElement[str]:
    """A corpus's name as readers show it: a deleted corpus keeps the name it had in ``target_name``."""
    return case((Corpus.status == CorpusStatus.DELETED, Corpus.target_name), else_=Corpus.name)


def item_visible(modality_id: int | ColumnElement[int], version: int | None) -> ColumnElement[bool]:
    """The items of a modality that a reader at ``version`` sees (None: the current state)."""
    if version is None:
        return live_item(modality_id)
    published = select(ItemBatch.id).where(ItemBatch.status == BatchStatus.COMPLETE,
                                           ItemBatch.published_version <= version)
    return and_(Item.modality_id == modality_id, Item.batch_id.in_(published),
                or_(Item.deleted_version.is_(None), Item.deleted_version > version))


def live_item(modality_id: int | ColumnElement[int]) -> ColumnElement[bool]:
    """The items of a modality as they are now: published, not deleted."""
    complete = select(ItemBatch.id).where(ItemBatch.status == BatchStatus.COMPLETE)
    return and_(Item.modality_id == modality_id, Item.batch_id.in_(complete), Item.deleted_version.is_(None))


def segment_visible(version: int | None) -> ColumnElement[bool]:
    """The segments a reader at ``version`` searches (None: the live ones now)."""
    if version is None:
        return and_(Segment.state == SegmentState.LIVE, Segment.dropped_version.is_(None))
    return and_(Segment.state == SegmentState.LIVE, Segment.created_version <= version,
                or_(Segment.dropped_version.is_(None), Segment.dropped_version > version))
