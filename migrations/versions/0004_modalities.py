"""modalities of a space

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
Reviewed by hand: one row per (space, modality name) with its kind (text, image, features) and the
input dimension its head takes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('modalities',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('space_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.Enum('text', 'image', 'features', name='modalitykind', native_enum=False, length=16), nullable=False),
    sa.Column('input_dim', sa.Integer(), nullable=False),
    sa.Column('encoder', sa.String(length=512), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['space_id'], ['spaces.id'], name=op.f('fk_modalities_space_id_spaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_modalities')),
    sa.UniqueConstraint('space_id', 'name', name=op.f('uq_modalities_space_id_name'))
    )
    with op.batch_alter_table('modalities', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_modalities_space_id'), ['space_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('modalities', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_modalities_space_id'))

    op.drop_table('modalities')
