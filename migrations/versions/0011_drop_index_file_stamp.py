"""index files are written once under a new name: no inode/mtime stamp

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
Reviewed by hand: a FAISS file is now written under a name no record has used, its record committed, and only
then are files no record names removed; a record's file never changes, so staleness is judged by its size, the
ids it holds and (in verify) its digest. The inode/mtime stamp of 0007 broke copies and backups of the data
folder; it goes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# SQLite rebuilds the table to drop a column: it keeps AUTOINCREMENT (0008) only when told
KEEP_IDS = {'sqlite_autoincrement': True}


def upgrade() -> None:
    with op.batch_alter_table('index_files', schema=None, table_kwargs=KEEP_IDS) as batch_op:
        batch_op.drop_column('file_stamp')


def downgrade() -> None:
    with op.batch_alter_table('index_files', schema=None, table_kwargs=KEEP_IDS) as batch_op:
        batch_op.add_column(sa.Column('file_stamp', sa.String(length=64), nullable=True))
