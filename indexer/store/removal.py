"""Removing rows, never more than asked: a complete corpus's deletion (rows and vectors in one commit), the rows
of ingests whose process died, and a space that an operation created and left empty."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from unibind.indexer.runtime.device import Device
from unibind.indexer.store.centre_keys import invalidate_centres, prune_centres
from unibind.indexer.store.contents import description_index
from unibind.indexer.store.lease import describe_owner, is_alive
from unibind.schema import Corpus, CorpusStatus, Database, Description, IndexFile, Modality, Space
from unibind.schema.errors import Conflict, NotFound
from unibind.schema.store_state import bump_version, lock_catalog

log = logging.getLogger(__name__)


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
            raise Conflict(f"corpus {corpus.target_name or corpus.name!r} is not complete: it is being ingested by "
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
