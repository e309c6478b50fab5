"""stamp of the index file on disk

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
Reviewed by hand: the inode and mtime of each FAISS file when its record was written, so a file replaced by a
write whose commit then failed (same ids, count and size, other vectors) is detected on load without hashing it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('index_files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('file_stamp', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('index_files', schema=None) as batch_op:
        batch_op.drop_column('file_stamp')
