"""What the knowledge base holds: spaces, corpora and categories, looked up and listed, and the description
index of a space. Removing rows is :mod:`unibind.indexer.store.removal`'s job; centre keys are
:mod:`unibind.indexer.store.centre_keys`'."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from unibind.indexer.index.data_home import DataHome
from unibind.indexer.index.descriptions import DescriptionIndex
from unibind.indexer.runtime.device import Device
from unibind.indexer.encoders.spec import parse_encoder_spec
from unibind.indexer.runtime.lease import is_alive
from unibind.schema import Category, Corpus, CorpusStatus, Database, Description, Space
from unibind.schema.errors import Conflict, InvalidInput, NotFound

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted"  # what an ingesting corpus whose process died is shown as


def find_space(session: Session, encoder: str | None) -> Space:
    """The space of an encoder spec, or the only space when none is named."""
    if encoder:
        spec = str(parse_encoder_spec(encoder))
        space = session.scalars(select(Space).where(Space.encoder == spec)).first()
        if space is None:
            known = ", ".join(session.scalars(select(Space.encoder))) or "none yet"
            raise NotFound(f"no space for encoder {spec!r} (spaces: {known}); ingest a corpus with it first")
        return space
    spaces = list(session.scalars(select(Space).order_by(Space.id)))
    if not spaces:
        raise Conflict("the knowledge base is empty: ingest a corpus first (unibind ingest FILE --name N --encoder SPEC)")
    if len(spaces) > 1:
        raise Conflict(f"several spaces exist ({', '.join(s.encoder for s in spaces)}): name one with --encoder")
    return spaces[0]


def find_corpus(session: Session, name: str, space: Space | None = None) -> Corpus:
    stmt = select(Corpus).where(Corpus.name == name, Corpus.status != CorpusStatus.DELETED)
    if space is not None:
        stmt = stmt.where(Corpus.space_id == space.id)
    found = list(session.scalars(stmt))
    if not found:
        names = ", ".join(session.scalars(select(Corpus.name).where(Corpus.status == CorpusStatus.COMPLETE)
                                          .order_by(Corpus.name))) or "none"
        raise NotFound(f"no corpus named {name!r} (corpora: {names})")
    if len(found) > 1:
        raise InvalidInput(f"corpus {name!r} exists in several spaces: name the space with --encoder")
    return found[0]


def list_corpora(session: Session) -> list[Corpus]:
    """Complete corpora and ingests (running or interrupted); deleted ones, which readers of older catalog versions
    may still see until the vacuum, are not listed."""
    return list(session.scalars(select(Corpus).join(Space).where(Corpus.status != CorpusStatus.DELETED)
                                .order_by(Space.id, Corpus.id)))


def corpus_state(corpus: Corpus) -> str:
    """``complete``, ``ingesting`` (its process lives) or ``interrupted`` (it died; the next write removes it)."""
    if corpus.status is not CorpusStatus.INGESTING:
        return corpus.status.value
    return CorpusStatus.INGESTING.value if is_alive(corpus.owner, corpus.heartbeat_at) else INTERRUPTED


@dataclass(frozen=True)
class CategoryCount:
    name: str
    n_descriptions: int
    n_corpora: int


def list_categories(session: Session, corpus: Corpus | None = None, space: Space | None = None) -> list[CategoryCount]:
    """Categories with their description counts (complete corpora only, or one corpus; one space if given)."""
    stmt = (
        select(Category.name, func.count(Description.id), func.count(func.distinct(Description.corpus_id)))
        .join(Description, Description.category_id == Category.id)
        .join(Corpus, Description.corpus_id == Corpus.id)
        .group_by(Category.name)
        .order_by(Category.name)
    )
    stmt = stmt.where(Corpus.id == corpus.id) if corpus is not None else stmt.where(Corpus.status == CorpusStatus.COMPLETE)
    if space is not None:
        stmt = stmt.where(Corpus.space_id == space.id)
    return [CategoryCount(name, n, c) for name, n, c in session.execute(stmt)]


def description_index(db: Database, space: Space, home: Path, device: Device) -> DescriptionIndex:
    return DescriptionIndex(db, space, DataHome(db, home), device)
