"""corpora carry the versions that published and deleted them

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
Reviewed by hand: a reader pinned to catalog version v sees the corpora with published_version <= v <
deleted_version, so a corpus deleted or replaced after v keeps its rows (status ``deleted``, renamed
``~deleted-<id>``, its name kept in ``target_name``) until the vacuum finds no reader that can see it. Complete
corpora were published before any version was recorded: 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEEP_IDS = {'sqlite_autoincrement': True}


def upgrade() -> None:
    with op.batch_alter_table('corpora', schema=None, table_kwargs=KEEP_IDS) as batch_op:
        batch_op.add_column(sa.Column('published_version', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('deleted_version', sa.BigInteger(), nullable=True))
    op.execute(sa.text("UPDATE corpora SET published_version = 0 WHERE status = 'complete'"))


def downgrade() -> None:
    # deleted corpora waiting for the vacuum go now: an older unibind does not know them
    op.execute(sa.text("DELETE FROM centre_members WHERE description_id IN (SELECT d.id FROM descriptions d JOIN "
                       "corpora c ON d.corpus_id = c.id WHERE c.status = 'deleted')"))
    op.execute(sa.text("DELETE FROM descriptions WHERE corpus_id IN (SELECT id FROM corpora WHERE status = 'deleted')"))
    op.execute(sa.text("DELETE FROM corpora WHERE status = 'deleted'"))
    bind = op.get_bind()
    seq = (bind.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'corpora'")).scalar()
           if bind.dialect.name == 'sqlite' else None)
    with op.batch_alter_table('corpora', schema=None, table_kwargs=KEEP_IDS) as batch_op:
        batch_op.drop_column('deleted_version')
        batch_op.drop_column('published_version')
    if seq is not None:  # SQLite rebuilt the table: its AUTOINCREMENT counter must not go back
        op.execute(sa.text("INSERT INTO sqlite_sequence (name, seq) SELECT 'corpora', 0 WHERE NOT EXISTS "
                           "(SELECT 1 FROM sqlite_sequence WHERE name = 'corpora')"))
        op.execute(sa.text(f"UPDATE sqlite_sequence SET seq = max(seq, {int(seq)}) WHERE name = 'corpora'"))
