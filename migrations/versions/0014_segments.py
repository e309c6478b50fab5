"""index segments replace index files

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
Reviewed by hand: an index is now a set of immutable segments, each a payload written once (a FAISS file or a
Milvus collection) named by a ``segments`` row; a write adds a segment of its own rows instead of rewriting the
whole index. A segment is registered (state ``building``, with its writer as owner) before its payload is written
and published by a ``created_version``; ``dropped_version`` ends it, ``replaced_by`` names the segment a merge put
it into; ``group_ids`` the corpora (or gallery batches, 0017) whose rows it holds. Each index's one file becomes its
first segment: the newest record of a (space, kind) is live from version 0, older ones (Milvus kept the one a
publish replaced) are dropped at 0 and go at the next write. Nothing is re-encoded or rewritten; ids keep their
values, and the id sequence carries on from index_files' (on SQLite its AUTOINCREMENT counter, on PostgreSQL its
sequence), so no record id is used twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEEP_IDS = {'sqlite_autoincrement': True}
SHARED = "id, space_id, kind, path, factory, n_vectors, ids_sha256, file_sha256, file_size, created_at"


def _carry_sequence(old: str, new: str) -> None:
    """Move ``new``'s id counter to where ``old``'s stands (ids deleted from ``old`` are not handed out again)."""
    bind = op.get_bind()
    if bind.dialect.name == 'sqlite':
        seq = bind.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = :t"), {"t": old}).scalar()
        top = bind.execute(sa.text(f"SELECT max(id) FROM {new}")).scalar()
        value = max(int(seq or 0), int(top or 0))
        bind.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = :t"), {"t": new})
        bind.execute(sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :v)"), {"t": new, "v": value})
    elif bind.dialect.name == 'postgresql':
        last = bind.execute(sa.text(f"SELECT last_value, is_called FROM {old}_id_seq")).one()
        top = bind.execute(sa.text(f"SELECT max(id) FROM {new}")).scalar()
        value = max(int(last[0]) if last[1] else int(last[0]) - 1, int(top or 0))
        bind.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{new}', 'id'), :v + 1, false)"), {"v": value})


def upgrade() -> None:
    op.create_table('segments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('space_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('state', sa.Enum('building', 'live', name='segmentstate', native_enum=False, length=16), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('factory', sa.String(length=200), nullable=False),
    sa.Column('n_vectors', sa.BigInteger(), nullable=False),
    sa.Column('ids_sha256', sa.String(length=64), nullable=False),
    sa.Column('file_sha256', sa.String(length=64), nullable=False),
    sa.Column('file_size', sa.BigInteger(), nullable=False),
    sa.Column('group_ids', sa.JSON(), nullable=False),
    sa.Column('created_version', sa.BigInteger(), nullable=True),
    sa.Column('dropped_version', sa.BigInteger(), nullable=True),
    sa.Column('replaced_by', sa.Integer(), nullable=True),
    sa.Column('owner', sa.String(length=200), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['space_id'], ['spaces.id'], name=op.f('fk_segments_space_id_spaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_segments')),
    **KEEP_IDS,
    )
    with op.batch_alter_table('segments', schema=None) as batch_op:
        batch_op.create_index('ix_segments_space_id_kind', ['space_id', 'kind'], unique=False)
    # the newest record of each index is its first segment; older ones (Milvus kept one for replicas) are dropped
    op.execute(sa.text(f"INSERT INTO segments ({SHARED}, group_ids, state, created_version, dropped_version) "
                       f"SELECT {SHARED}, corpus_ids, 'live', 0, CASE WHEN id = (SELECT max(n.id) FROM index_files n "
                       "WHERE n.space_id = index_files.space_id AND n.kind = index_files.kind) THEN NULL ELSE 0 END "
                       "FROM index_files"))
    _carry_sequence('index_files', 'segments')
    with op.batch_alter_table('index_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_index_files_space_id'))
    op.drop_table('index_files')


def downgrade() -> None:
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
    sa.PrimaryKeyConstraint('id', name=op.f('pk_index_files')),
    **KEEP_IDS,
    )
    with op.batch_alter_table('index_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_index_files_space_id'), ['space_id'], unique=False)
    # an index of several segments cannot be one file again: the newest live segment keeps its place, and
    # `unibind index rebuild` (which an older unibind runs when the record disagrees with the store) repairs it
    op.execute(sa.text(f"INSERT INTO index_files ({SHARED}, corpus_ids) SELECT {SHARED}, group_ids FROM segments s "
                       "WHERE s.state = 'live' AND s.dropped_version IS NULL AND s.id = (SELECT max(n.id) FROM "
                       "segments n WHERE n.space_id = s.space_id AND n.kind = s.kind AND n.state = 'live' AND "
                       "n.dropped_version IS NULL)"))
    _carry_sequence('segments', 'index_files')
    with op.batch_alter_table('segments', schema=None) as batch_op:
        batch_op.drop_index('ix_segments_space_id_kind')
    op.drop_table('segments')
