"""knowledge-base store: spaces, corpora, categories, descriptions, index files

Revision ID: 0001
Revises: 
Create Date: 2026-11-22
Reviewed by hand: one table per concept (space, corpus, category, description, index file); the description id
is the FAISS id.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('categories',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=500), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_categories')),
    sa.UniqueConstraint('name', name=op.f('uq_categories_name'))
    )
    op.create_table('spaces',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('encoder', sa.String(length=512), nullable=False),
    sa.Column('dim', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_spaces')),
    sa.UniqueConstraint('encoder', name=op.f('uq_spaces_encoder'))
    )
    op.create_table('corpora',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('space_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('source', sa.Text(), nullable=True),
    sa.Column('origin', sa.Text(), nullable=True),
    sa.Column('file_sha256', sa.String(length=64), nullable=True),
    sa.Column('status', sa.Enum('ingesting', 'complete', name='corpusstatus', native_enum=False, length=16), nullable=False),
    sa.Column('n_descriptions', sa.Integer(), nullable=False),
    sa.Column('n_duplicates', sa.Integer(), nullable=False),
    sa.Column('n_categories', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['space_id'], ['spaces.id'], name=op.f('fk_corpora_space_id_spaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_corpora')),
    sa.UniqueConstraint('space_id', 'name', name=op.f('uq_corpora_space_id_name'))
    )
    with op.batch_alter_table('corpora', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_corpora_space_id'), ['space_id'], unique=False)

    op.create_table('index_files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('space_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('factory', sa.String(length=200), nullable=False),
    sa.Column('n_vectors', sa.BigInteger(), nullable=False),
    sa.Column('ids_sha256', sa.String(length=64), nullable=False),
    sa.Column('file_sha256', sa.String(length=64), nullable=False),
    sa.Column('file_size', sa.BigInteger(), nullable=False),
    sa.Column('corpus_ids', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['space_id'], ['spaces.id'], name=op.f('fk_index_files_space_id_spaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_index_files'))
    )
    with op.batch_alter_table('index_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_index_files_space_id'), ['space_id'], unique=False)

    op.create_table('descriptions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('corpus_id', sa.Integer(), nullable=False),
    sa.Column('category_id', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('text_hash', sa.String(length=40), nullable=False),
    sa.Column('meta', sa.JSON(), nullable=True),
    sa.Column('vector', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['category_id'], ['categories.id'], name=op.f('fk_descriptions_category_id_categories')),
    sa.ForeignKeyConstraint(['corpus_id'], ['corpora.id'], name=op.f('fk_descriptions_corpus_id_corpora'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_descriptions')),
    sa.UniqueConstraint('corpus_id', 'category_id', 'text_hash', name=op.f('uq_descriptions_corpus_id_category_id_text_hash'))
    )
    with op.batch_alter_table('descriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_descriptions_category_id'), ['category_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_descriptions_corpus_id'), ['corpus_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('descriptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_descriptions_corpus_id'))
        batch_op.drop_index(batch_op.f('ix_descriptions_category_id'))

    op.drop_table('descriptions')
    with op.batch_alter_table('index_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_index_files_space_id'))

    op.drop_table('index_files')
    with op.batch_alter_table('corpora', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_corpora_space_id'))

    op.drop_table('corpora')
    op.drop_table('spaces')
    op.drop_table('categories')
