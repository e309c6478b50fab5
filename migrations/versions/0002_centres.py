"""embedding centres and their members

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
Reviewed by hand: centres keyed by space, category, template, K, strategy and the corpora drawn from;
members are FAISS-searchable vectors (a description, or a synthetic prompt vector).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('centres',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('space_id', sa.Integer(), nullable=False),
    sa.Column('category_id', sa.Integer(), nullable=False),
    sa.Column('template', sa.String(length=500), nullable=False),
    sa.Column('k', sa.Integer(), nullable=False),
    sa.Column('strategy', sa.String(length=32), nullable=False),
    sa.Column('corpora_key', sa.String(length=500), nullable=False),
    sa.Column('n_candidates', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['category_id'], ['categories.id'], name=op.f('fk_centres_category_id_categories'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['space_id'], ['spaces.id'], name=op.f('fk_centres_space_id_spaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_centres')),
    sa.UniqueConstraint('space_id', 'category_id', 'template', 'k', 'strategy', 'corpora_key', name='uq_centres_key')
    )
    with op.batch_alter_table('centres', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_centres_category_id'), ['category_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_centres_space_id'), ['space_id'], unique=False)

    op.create_table('centre_members',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('centre_id', sa.Integer(), nullable=False),
    sa.Column('description_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('vector', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['centre_id'], ['centres.id'], name=op.f('fk_centre_members_centre_id_centres'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['description_id'], ['descriptions.id'], name=op.f('fk_centre_members_description_id_descriptions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_centre_members'))
    )
    with op.batch_alter_table('centre_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_centre_members_centre_id'), ['centre_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('centre_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_centre_members_centre_id'))

    op.drop_table('centre_members')
    with op.batch_alter_table('centres', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_centres_space_id'))
        batch_op.drop_index(batch_op.f('ix_centres_category_id'))

    op.drop_table('centres')
