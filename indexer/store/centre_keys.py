"""Which corpora a centre row was drawn from: its key, the complete corpora of a space, and the removal of centre
rows that no key can reach any more (centres are a cache; one that is gone is rebuilt on its next use)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from unibind.schema import Centre, Corpus, CorpusStatus, Description

log = logging.getLogger(__name__)

ALL_CORPORA = "all:"  # a centre key that depends on every corpus drawn from (the informative strategy's)


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
