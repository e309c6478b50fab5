"""tombstones: rows deleted while a segment still holds them

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
Reviewed by hand: deleting rows no longer rewrites an index; each segment that may hold a deleted row gets a
tombstone (segment, row, version), which readers at that version or later leave out and a compaction folds in.
Tombstones go with their segment.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('tombstones',
    sa.Column('segment_id', sa.Integer(), nullable=False),
    sa.Column('row_id', sa.BigInteger(), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['segment_id'], ['segments.id'], name=op.f('fk_tombstones_segment_id_segments'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('segment_id', 'row_id', name=op.f('pk_tombstones'))
    )


def downgrade() -> None:
    op.drop_table('tombstones')
