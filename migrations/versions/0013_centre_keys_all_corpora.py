"""centre keys say when they depend on every corpus drawn from

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
Reviewed by hand: the informative strategy's centres depend on all the corpora they were drawn from, so their key
is the whole set; it now carries the prefix ``all:``, which lets a publish remove the centres an older set keyed
(they piled up: a full set per ingest) without knowing the strategies. Data only.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(sa.text("UPDATE centres SET corpora_key = 'all:' || corpora_key "
                       "WHERE strategy = 'informative' AND corpora_key NOT LIKE 'all:%'"))


def downgrade() -> None:
    op.execute(sa.text("UPDATE centres SET corpora_key = substr(corpora_key, 5) WHERE corpora_key LIKE 'all:%'"))
