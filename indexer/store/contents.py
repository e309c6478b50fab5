"""What the knowledge base holds: spaces, corpora and categories; corpus deletion, the removal of abandoned
ingests, and the centre rows that no key can reach any more."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from unibind.indexer.index.data_home import DataHome
from unibind.indexer.index.descriptions import DescriptionIndex
from unibind.indexer.runtime.device import Device
from unibind.indexer.encoders.spec import parse_encoder_spec
from unibind.indexer.store.lease import describe_owner, is_alive
from unibind.schema import Category, Centre, Corpus, CorpusStatus, Database, Description, IndexFile, Modality, Space
from unibind.schema.errors import InvalidInput, NotFound
from unibind.schema.store_state import bump_version, lock_catalog

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted"  # what an ingesting corpus whose process died is shown as
ALL_CORPORA = "all:"  # a centre key that depends on every corpus drawn from (the informative strategy's)


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
        raise InvalidInput("the knowledge base is empty: ingest a corpus first (unibind ingest FILE --name N --encoder SPEC)")
    if len(spaces) > 1:
        raise InvalidInput(f"several spaces exist ({', '.join(s.encoder for s in spaces)}): name one with --encoder")
    return spaces[0]


def find_corpus(session: Session, name: str, space: Space | None = None) -> Corpus:
    stmt = select(Corpus).where(Corpus.name == name)
    if space is not None:
        stmt = stmt.where(Corpus.space_id == space.id)
    found = list(session.scalars(stmt))
    if not found:
        names = ", ".join(session.scalars(select(Corpus.name).order_by(Corpus.name))) or "none"
        raise NotFound(f"no corpus named {name!r} (corpora: {names})")
    if len(found) > 1:
        raise InvalidInput(f"corpus {name!r} exists in several spaces: name the space with --encoder")
    return found[0]


def list_corpora(session: Session) -> list[Corpus]:
    return list(session.scalars(select(Corpus).join(Space).order_by(Space.id, Corpus.id)))


def corpus_state(corpus: Corpus) -> str:
    """``complete``, ``ingesting`` (its process lives) or ``interrupted`` (it died; the next write removes it)."""
    if corpus.status is CorpusStatus.COMPLETE:
        return CorpusStatus.COMPLETE.value
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


# -- centre rows --------------------------------------------------------------------------------------
def corpora_key(corpus_ids: Iterable[int]) -> str:
    """Sorted corpus ids, comma-joined; a digest when that is long (the column holds 500 characters)."""
    key = ",".join(map(str, sorted(set(corpus_ids))))
    return key if len(key) <= 200 else "sha1:" + hashlib.sha1(key.encode()).hexdigest()


def complete_corpus_ids(session: Session, space_id: int) -> set[int]:
    return set(session.scalars(select(Corpus.id).where(Corpus.space_id == space_id, Corpus.status == CorpusStatus.COMPLETE)))


def invalidate_centres(session: Session, space_id: int, corpus_id: int) -> int:
    """Delete the space's centres of every category the corpus has (members go by cascade)."""
    categories = select(Description.category_id).where(Description.corpus_id == corpus_id).distinct()
    result = session.execute(delete(Centre).where(Centre.space_id == space_id, Centre.category_id.in_(categories)))
    return int(result.rowcount or 0)


def prune_centres(session: Session, space_id: int) -> int:
    """Delete the space's centres that no key can reach now (call after the complete corpora changed): those
    keyed by every corpus of an older set, and those drawn from a corpus that is no longer complete. Centres are
    a cache: one built from a chosen subset is rebuilt on its next use."""
    complete = complete_corpus_ids(session, space_id)
    current_all = ALL_CORPORA + corpora_key(complete)
    dead: list[int] = []
    for centre_id, key in session.execute(select(Centre.id, Centre.corpora_key).where(Centre.space_id == space_id)):
        if key.startswith(ALL_CORPORA):
            if key != current_all:
                dead.append(centre_id)
        elif key and not key.startswith("sha1:") and not {int(i) for i in key.split(",")} <= complete:
            dead.append(centre_id)
    for start in range(0, len(dead), 10_000):
        session.execute(delete(Centre).where(Centre.id.in_(dead[start : start + 10_000])))
    if dead:
        log.info("removed %d centres no key reaches any more", len(dead))
    return len(dead)


# -- corpus rows --------------------------------------------------------------------------------------
def delete_corpus_rows(session: Session, corpus_id: int) -> None:
    """Delete a corpus and its descriptions (the caller keeps the index file in step)."""
    session.execute(delete(Description).where(Description.corpus_id == corpus_id))
    session.execute(delete(Corpus).where(Corpus.id == corpus_id))


def delete_corpus(db: Database, corpus_id: int, home: Path, device: Device) -> int:
    """Take a complete corpus's vectors out of the index and delete its rows, in one commit. Returns the count."""
    reap_abandoned(db)
    with db.session() as session:
        corpus = session.get(Corpus, corpus_id)
        if corpus is None:
            raise NotFound(f"no corpus with id {corpus_id}")
        if corpus.status is not CorpusStatus.COMPLETE:
            raise NotFound(f"corpus {corpus.target_name or corpus.name!r} is not complete: it is being ingested by "
                           f"{describe_owner(corpus.owner)}; stop that process (its rows go with the next write)")
        space, name = corpus.space, corpus.name
    index = description_index(db, space, home, device)
    with index.lock():
        store = index.without_corpus(corpus_id)
        with db.transaction() as session:
            bump_version(session)
            corpus = session.get(Corpus, corpus_id)
            if corpus is None or corpus.status is not CorpusStatus.COMPLETE:
                raise NotFound(f"corpus {name!r} was deleted by another process meanwhile")
            n = session.scalar(select(func.count(Description.id)).where(Description.corpus_id == corpus_id)) or 0
            invalidate_centres(session, space.id, corpus_id)
            delete_corpus_rows(session, corpus_id)
            session.flush()
            prune_centres(session, space.id)
            index.save(session, store)
    log.info("deleted corpus %s (%d descriptions)", name, n)
    return int(n)


def reap_abandoned(db: Database) -> list[str]:
    """Remove the rows of ingests whose process died (their corpora were never published, so no index holds
    them). Live ingests are never touched. Every writer calls this first; so does ``unibind index rebuild``.
    Returns the names those ingests would have published."""
    with db.session() as session:
        pending = session.execute(
            select(Corpus.id, Corpus.owner, Corpus.heartbeat_at).where(Corpus.status == CorpusStatus.INGESTING)
        ).all()
    dead = [cid for cid, owner, beat in pending if not is_alive(owner, beat)]
    if not dead:
        return []
    names = []
    with db.transaction() as session:
        lock_catalog(session)
        spaces = set()
        for corpus in list(session.scalars(select(Corpus).where(Corpus.id.in_(dead)))):
            # read again under the lock: a heartbeat may have come in meanwhile
            if corpus.status is CorpusStatus.INGESTING and not is_alive(corpus.owner, corpus.heartbeat_at):
                names.append(corpus.target_name or corpus.name)
                if corpus.created_space:
                    spaces.add(corpus.space_id)
                delete_corpus_rows(session, corpus.id)
        session.flush()
        for space_id in spaces:  # a space the dead ingest made goes too, when nothing else is in it
            drop_space_if_unused(session, space_id)
    if names:
        log.warning("removed the rows of interrupted ingests: %s", ", ".join(names))
    return names


def drop_space_if_unused(session: Session, space_id: int) -> bool:
    """Delete a space that holds nothing (no corpora, modalities or index records); call under the catalog
    lock. Only for the space an operation created, when that operation failed or died."""
    used = any(
        session.scalar(select(func.count()).select_from(model).where(model.space_id == space_id))
        for model in (Corpus, Modality, IndexFile)
    )
    if not used:
        bump_version(session)  # a space goes: the catalog version moves
        session.execute(delete(Space).where(Space.id == space_id))
    return not used
