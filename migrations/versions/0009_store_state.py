"""the store's identity and catalog version

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
Reviewed by hand: one row (id = 1) holding a UUID made here, which names the store's folders under the data
folder whatever URL reaches the database (``localhost`` and ``127.0.0.1`` are one store), and the catalog
version, bumped in the same transaction as every publish, which caches and the service compare.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table('store_state',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('store_id', sa.String(length=36), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_store_state_single_row')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_store_state'))
    )
    op.bulk_insert(table, [{'id': 1, 'store_id': str(uuid.uuid4()), 'version': 0}])


def downgrade() -> None:
    op.drop_table('store_state')
