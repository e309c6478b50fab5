"""gallery items are added in batches and deleted by version

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
Reviewed by hand: a gallery add writes its items into a pending batch before the publish, which only flips the
batch to complete at a catalog version; a removal stamps ``deleted_version`` on the items instead of deleting
them, so readers pinned to an older version still see them until the vacuum. Existing items become one complete
batch per modality, published at version 0, and the gallery's live segment holds that batch (``group_ids``). An
index on ``deleted_version`` (only the removed items) keeps the vacuum's look for them cheap. SQLite rebuilds
``items`` to make ``batch_id`` required: its AUTOINCREMENT counter is kept, so ids of deleted items are not reused.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEEP_IDS = {'sqlite_autoincrement': True}


def _sequence(table: str) -> int | None:
    """SQLite's AUTOINCREMENT counter of ``table`` (a rebuild of the table would set it back to max(id))."""
    bind = op.get_bind()
    if bind.dialect.name != 'sqlite':
        return None
    return bind.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = :t"), {"t": table}).scalar()


def _restore(table: str, seq: int | None) -> None:
    """Put SQLite's AUTOINCREMENT counter of ``table`` back where it stood (a rebuild may lower or drop it)."""
    if seq is None:
        return
    op.execute(sa.text(f"INSERT INTO sqlite_sequence (name, seq) SELECT '{table}', 0 WHERE NOT EXISTS "
                       f"(SELECT 1 FROM sqlite_sequence WHERE name = '{table}')"))
    op.execute(sa.text(f"UPDATE sqlite_sequence SET seq = max(seq, {int(seq)}) WHERE name = '{table}'"))


def upgrade() -> None:
    op.create_table('item_batches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('modality_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('pending', 'complete', name='batchstatus', native_enum=False, length=16),
              nullable=False),
    sa.Column('published_version', sa.BigInteger(), nullable=True),
    sa.Column('owner', sa.String(length=200), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['modality_id'], ['modalities.id'], name=op.f('fk_item_batches_modality_id_modalities'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_item_batches')),
    **KEEP_IDS,
    )
    with op.batch_alter_table('item_batches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_item_batches_modality_id'), ['modality_id'], unique=False)
    op.execute(sa.text("INSERT INTO item_batches (modality_id, status, published_version, created_at) "
                       "SELECT DISTINCT modality_id, 'complete', 0, CURRENT_TIMESTAMP FROM items"))
    with op.batch_alter_table('items', schema=None, table_kwargs=KEEP_IDS) as batch_op:
        batch_op.add_column(sa.Column('batch_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('deleted_version', sa.BigInteger(), nullable=True))
    op.execute(sa.text("UPDATE items SET batch_id = (SELECT b.id FROM item_batches b WHERE b.modality_id = "
                       "items.modality_id)"))
    segments = sa.table('segments', sa.column('kind', sa.String), sa.column('dropped_version', sa.BigInteger),
                        sa.column('group_ids', sa.JSON))
    for batch_id, modality_id in op.get_bind().execute(sa.text("SELECT id, modality_id FROM item_batches")).all():
        op.execute(segments.update().where(segments.c.kind == f'items:{modality_id}',
                                           segments.c.dropped_version.is_(None)).values(group_ids=[batch_id]))
    seq = _sequence('items')
    with op.batch_alter_table('items', schema=None, table_kwargs=KEEP_IDS) as batch_op:
        batch_op.alter_column('batch_id', existing_type=sa.Integer(), nullable=False)
        batch_op.create_index(batch_op.f('ix_items_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index('ix_items_deleted_version', ['deleted_version'], unique=False,
                              sqlite_where=sa.text('deleted_version IS NOT NULL'),
                              postgresql_where=sa.text('deleted_version IS NOT NULL'))
        batch_op.create_foreign_key(batch_op.f('fk_items_batch_id_item_batches'), 'item_batches', ['batch_id'], ['id'],
                                    ondelete='CASCADE')
    _restore('items', seq)


def downgrade() -> None:
    gone = ("SELECT id FROM items WHERE deleted_version IS NOT NULL OR batch_id IN "
            "(SELECT id FROM item_batches WHERE status <> 'complete')")
    op.execute(sa.text(f"DELETE FROM item_fields WHERE item_id IN ({gone})"))
    op.execute(sa.text(f"DELETE FROM items WHERE id IN ({gone})"))
    seq = _sequence('items')
    with op.batch_alter_table('items', schema=None, table_kwargs=KEEP_IDS) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_items_batch_id_item_batches'), type_='foreignkey')
        batch_op.drop_index('ix_items_deleted_version')
        batch_op.drop_index(batch_op.f('ix_items_batch_id'))
        batch_op.drop_column('deleted_version')
        batch_op.drop_column('batch_id')
    _restore('items', seq)
    with op.batch_alter_table('item_batches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_item_batches_modality_id'))
    op.drop_table('item_batches')
