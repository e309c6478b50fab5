"""trained modality heads

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
Reviewed by hand: versions of a modality's head (safetensors file, dims, hyper-parameters, data hash,
validation metrics); a partial unique index keeps at most one active head per modality.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('heads',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('modality_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('file_sha256', sa.String(length=64), nullable=False),
    sa.Column('d_in', sa.Integer(), nullable=False),
    sa.Column('d_out', sa.Integer(), nullable=False),
    sa.Column('hyperparams', sa.JSON(), nullable=False),
    sa.Column('data_sha256', sa.String(length=64), nullable=False),
    sa.Column('n_pairs', sa.Integer(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('active', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['modality_id'], ['modalities.id'], name=op.f('fk_heads_modality_id_modalities'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_heads')),
    sa.UniqueConstraint('modality_id', 'version', name=op.f('uq_heads_modality_id_version'))
    )
    with op.batch_alter_table('heads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_heads_modality_id'), ['modality_id'], unique=False)
        batch_op.create_index('uq_heads_one_active', ['modality_id'], unique=True,
                              sqlite_where=sa.text('active'), postgresql_where=sa.text('active'))


def downgrade() -> None:
    with op.batch_alter_table('heads', schema=None) as batch_op:
        batch_op.drop_index('uq_heads_one_active', sqlite_where=sa.text('active'), postgresql_where=sa.text('active'))
        batch_op.drop_index(batch_op.f('ix_heads_modality_id'))

    op.drop_table('heads')
