"""ids are never reused on SQLite (AUTOINCREMENT)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
Reviewed by hand: without AUTOINCREMENT, SQLite gives a new row the largest id in use plus one, so deleting the
newest corpus (or items) handed its ids to the next ones: a cache or a running service holding vectors by id then
paired old vectors with new text. Each table with an integer key is rebuilt as ``INTEGER PRIMARY KEY
AUTOINCREMENT`` (copying every row; SQLite then remembers the largest id in ``sqlite_sequence``). Foreign keys
are switched off around the rebuild by ``unibind.schema.database.migrate`` (dropping a parent table with them on would
cascade). PostgreSQL's sequences never go back: nothing to do there.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op


revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# parents before children, so each copy sees its parents in place
TABLES = ('spaces', 'categories', 'corpora', 'descriptions', 'index_files', 'centres', 'centre_members',
          'modalities', 'heads', 'items')


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != 'sqlite':
        return
    for table in TABLES:
        with op.batch_alter_table(table, recreate='always', table_kwargs={'sqlite_autoincrement': autoincrement}):
            pass


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
