"""who is ingesting a corpus, and whether it still lives

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
Reviewed by hand: an ingesting corpus records the name it will be published under, its owner (host, process
and its start time) and a heartbeat, so a second ingest of the same name fails at once with a clear message, and
the rows of an ingest whose process died are shown as interrupted and removed by the next writer, never those
of a live one; ``created_space`` says the ingest made its space, which then goes with it when it holds nothing
else.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# SQLite rebuilds the table to drop a column: it keeps AUTOINCREMENT (0008) only when told
KEEP_IDS = {'sqlite_autoincrement': True}


def upgrade() -> None:
    with op.batch_alter_table('corpora', schema=None, table_kwargs=KEEP_IDS) as batch_op:
        batch_op.add_column(sa.Column('target_name', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('owner', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('created_space', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('corpora', schema=None, table_kwargs=KEEP_IDS) as batch_op:
        batch_op.drop_column('created_space')
        batch_op.drop_column('heartbeat_at')
        batch_op.drop_column('owner')
        batch_op.drop_column('target_name')
