"""The store's one ``store_state`` row: its identity and the catalog version.

Every transaction that publishes (makes a change queries can see) calls :func:`bump_version` as its *first*
statement, and every transaction that creates or removes shared rows (spaces, categories, modalities, centres,
head versions) calls :func:`lock_catalog` (or ``bump_version``) first. Both update the one row, which takes
PostgreSQL's row lock or SQLite's write lock until the commit: such transactions run one at a time across every
process and host, so a check-then-insert inside them cannot race, and no two of them can deadlock on each other.
Callers keep them short: compute first, then lock, check and write.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from unibind.schema.models import StoreState

ROW = 1


def lock_catalog(session: Session) -> None:
    """Take the catalog lock for the rest of the transaction (a no-op update of the state row)."""
    session.execute(update(StoreState).where(StoreState.id == ROW).values(version=StoreState.version))


def bump_version(session: Session) -> int:
    """Take the catalog lock and move the catalog version on; returns the new version (visible on commit)."""
    new = session.scalar(
        update(StoreState).where(StoreState.id == ROW).values(version=StoreState.version + 1).returning(StoreState.version)
    )
    if new is None:
        raise RuntimeError("the store has no store_state row: run the migrations (any unibind command does)")
    return int(new)


def catalog_version(session: Session) -> int:
    """The committed catalog version (one primary-key read: cheap enough for every request)."""
    return int(session.scalar(select(StoreState.version).where(StoreState.id == ROW)) or 0)


def store_identity(session: Session) -> str:
    found = session.scalar(select(StoreState.store_id).where(StoreState.id == ROW))
    if found is None:
        raise RuntimeError("the store has no store_state row: run the migrations (any unibind command does)")
    return str(found)


def catalog_state(session: Session) -> tuple[int, int]:
    """(catalog version, horizon): a reader at a version below the horizon must refresh (the vacuum removed rows
    it could see)."""
    row = session.execute(select(StoreState.version, StoreState.horizon).where(StoreState.id == ROW)).first()
    return (int(row[0]), int(row[1])) if row is not None else (0, 0)
