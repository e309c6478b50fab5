"""readers lease the version they answer from; the vacuum's horizon

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
Reviewed by hand: a long-lived reader (a service) records the oldest catalog version it still answers from, with
an owner and a heartbeat as ingests do; the vacuum keeps whatever that version can see, and records in
``store_state.horizon`` the version below which it removed rows, so a reader that fell behind it refreshes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEEP_IDS = {'sqlite_autoincrement': True}


def upgrade() -> None:
    op.create_table('reader_leases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('owner', sa.String(length=200), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reader_leases')),
    **KEEP_IDS,
    )
    with op.batch_alter_table('store_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('horizon', sa.BigInteger(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('store_state', schema=None) as batch_op:
        batch_op.drop_column('horizon')
    op.drop_table('reader_leases')
