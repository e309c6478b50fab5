"""What the knowledge base holds: spaces, corpora and categories; corpus deletion and repair."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from indexer.description_index import DescriptionIndex, index_dir
from indexer.device import Device
from indexer.encoder_spec import parse_encoder_spec
from schema import Category, Centre, Corpus, CorpusStatus, Database, Description, Space

log = logging.getLogger(__name__)


def find_space(session: Session, encoder: str | None) -> Space:
    """The space of an encoder spec, or the only space when none is named."""
    if encoder:
        spec = str(parse_encoder_spec(encoder))
        space = session.scalars(select(Space).where(Space.encoder == spec)).first()
        if space is None:
            known = ", ".join(session.scalars(select(Space.encoder))) or "none yet"
            raise ValueError(f"no space for encoder {spec!r} (spaces: {known}); ingest a corpus with it first")
        return space
    spaces = list(session.scalars(select(Space).order_by(Space.id)))
    if not spaces:
        raise ValueError("the knowledge base is empty: ingest a corpus first (unibind ingest FILE --name N --encoder SPEC)")
    if len(spaces) > 1:
        raise ValueError(f"several spaces exist ({', '.join(s.encoder for s in spaces)}): name one with --encoder")
    return spaces[0]


def find_corpus(session: Session, name: str, space: Space | None = None) -> Corpus:
    stmt = select(Corpus).where(Corpus.name == name)
    if space is not None:
        stmt = stmt.where(Corpus.space_id == space.id)
    found = list(session.scalars(stmt))
    if not found:
        names = ", ".join(session.scalars(select(Corpus.name).order_by(Corpus.name))) or "none"
        raise ValueError(f"no corpus named {name!r} (corpora: {names})")
    if len(found) > 1:
        raise ValueError(f"corpus {name!r} exists in several spaces: name the space with --encoder")
    return found[0]


def list_corpora(session: Session) -> list[Corpus]:
    return list(session.scalars(select(Corpus).join(Space).order_by(Space.id, Corpus.id)))


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
    return DescriptionIndex(db, space, index_dir(home, db), device)


def invalidate_centres(session: Session, space_id: int, corpus_id: int) -> int:
    """Delete the space's centres of every category the corpus has (members go by cascade)."""
    categories = select(Description.category_id).where(Description.corpus_id == corpus_id).distinct()
    result = session.execute(delete(Centre).where(Centre.space_id == space_id, Centre.category_id.in_(categories)))
    return int(result.rowcount or 0)


def delete_corpus_rows(session: Session, corpus_id: int) -> None:
    """Delete a corpus and its descriptions (the caller keeps the index file in step)."""
    session.execute(delete(Description).where(Description.corpus_id == corpus_id))
    session.execute(delete(Corpus).where(Corpus.id == corpus_id))


def delete_corpus(db: Database, corpus_id: int, home: Path, device: Device) -> int:
    """Take the corpus's vectors out of the index and delete its rows, in one commit. Returns the count."""
    with db.session() as session:
        corpus = session.get(Corpus, corpus_id)
        if corpus is None:
            raise ValueError(f"no corpus with id {corpus_id}")
        was_complete = corpus.status == CorpusStatus.COMPLETE
        space = corpus.space
        n = session.scalar(select(func.count(Description.id)).where(Description.corpus_id == corpus_id)) or 0
    index = description_index(db, space, home, device)
    with index.lock():
        store = index.without_corpus(corpus_id) if was_complete else None
        with db.transaction() as session:
            invalidate_centres(session, space.id, corpus_id)
            delete_corpus_rows(session, corpus_id)
            session.flush()
            if store is not None:
                index.save(session, store, list(index.complete_corpora(session)))
    log.info("deleted corpus %d (%d descriptions)", corpus_id, n)
    return int(n)


def purge_incomplete(db: Database, space: Space) -> list[str]:
    """Delete the rows of corpora left incomplete by a failed or killed run. Returns their names.

    Not for use while another process is ingesting into the same space.
    """
    with db.transaction() as session:
        stale = list(
            session.scalars(select(Corpus).where(Corpus.space_id == space.id, Corpus.status != CorpusStatus.COMPLETE))
        )
        names = [c.name for c in stale]
        for corpus in stale:
            delete_corpus_rows(session, corpus.id)
    if names:
        log.warning("removed incomplete corpora: %s", ", ".join(names))
    return names
