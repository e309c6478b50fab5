"""Removing rows, never more than asked: a complete corpus's deletion (retired in one short commit; the vacuum
removes its rows once no reader can see them), the rows of ingests whose process died, and a space that an
operation created and left empty."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from unibind.indexer.runtime.device import Device
from unibind.indexer.store.centre_keys import invalidate_centres, prune_centres
from unibind.indexer.store.contents import description_index
from unibind.indexer.runtime.lease import describe_owner, is_alive
from unibind.schema import Corpus, CorpusStatus, Database, Description, Modality, Segment, Space
from unibind.schema.errors import Conflict, NotFound
from unibind.schema.store_state import bump_version, lock_catalog

log = logging.getLogger(__name__)

DELETED_PREFIX = "~deleted-"  # the name of a deleted corpus until the vacuum removes it


def delete_corpus_rows(session: Session, corpus_id: int) -> None:
    """Delete a corpus and its descriptions now (an unpublished one: no index holds it)."""
    session.execute(delete(Description).where(Description.corpus_id == corpus_id))
    session.execute(delete(Corpus).where(Corpus.id == corpus_id))


def retire_corpus(session: Session, corpus: Corpus, version: int) -> None:
    """Mark a complete corpus deleted at ``version``: readers pinned to older versions still see it, until the
    vacuum removes it. Its name is freed at once (kept in ``target_name``)."""
    corpus.target_name = corpus.name
    corpus.name = f"{DELETED_PREFIX}{corpus.id}"
    corpus.status = CorpusStatus.DELETED
    corpus.deleted_version = version
    session.flush()


def delete_corpus(db: Database, corpus_id: int, home: Path, device: Device) -> int:
    """Take a complete corpus out of the index and the catalog in one short commit (its segment is dropped, or its
    rows tombstoned: nothing is rewritten). Returns its description count."""
    from unibind.indexer.store.vacuum import tidy

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
    with db.transaction() as session:
        version = bump_version(session)
        corpus = session.get(Corpus, corpus_id)
        if corpus is None or corpus.status is not CorpusStatus.COMPLETE:
            raise NotFound(f"corpus {name!r} was deleted by another process meanwhile")
        n = corpus.n_descriptions
        invalidate_centres(session, space.id, corpus_id)
        retire_corpus(session, corpus, version)
        index.remove_corpus(session, corpus_id, version)
        prune_centres(session, space.id)
    log.info("deleted corpus %s (%d descriptions)", name, n)
    tidy(db, home, device, [index])
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
        for model in (Corpus, Modality, Segment)
    )
    if not used:
        bump_version(session)  # a space goes: the catalog version moves
        session.execute(delete(Space).where(Space.id == space_id))
    return not used
