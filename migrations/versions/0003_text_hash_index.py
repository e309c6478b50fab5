"""index descriptions by text hash

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
Reviewed by hand: centre building looks up stored vectors of prompts and templates by text hash.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('descriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_descriptions_text_hash'), ['text_hash'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('descriptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_descriptions_text_hash'))

