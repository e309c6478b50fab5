"""gallery items and their indexed metadata fields

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
Reviewed by hand: items of any modality (id = FAISS id in the modality's gallery index; the vector in
the space and the raw encoder output it was projected from) and their scalar metadata fields, indexed
by (key, value) for filtered searches.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('items',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('modality_id', sa.Integer(), nullable=False),
    sa.Column('uri', sa.Text(), nullable=True),
    sa.Column('label', sa.String(length=500), nullable=True),
    sa.Column('meta', sa.JSON(), nullable=True),
    sa.Column('raw', sa.LargeBinary(), nullable=True),
    sa.Column('vector', sa.LargeBinary(), nullable=False),
    sa.Column('head_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['head_id'], ['heads.id'], name=op.f('fk_items_head_id_heads'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['modality_id'], ['modalities.id'], name=op.f('fk_items_modality_id_modalities'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_items'))
    )
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.create_index('ix_items_modality_id_label', ['modality_id', 'label'], unique=False)

    op.create_table('item_fields',
    sa.Column('item_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('value', sa.String(length=500), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['items.id'], name=op.f('fk_item_fields_item_id_items'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('item_id', 'key', name=op.f('pk_item_fields'))
    )
    with op.batch_alter_table('item_fields', schema=None) as batch_op:
        batch_op.create_index('ix_item_fields_key_value', ['key', 'value'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('item_fields', schema=None) as batch_op:
        batch_op.drop_index('ix_item_fields_key_value')

    op.drop_table('item_fields')
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.drop_index('ix_items_modality_id_label')

    op.drop_table('items')
