"""Detected language of each mention.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mentions") as batch:
        batch.add_column(sa.Column("detected_language", sa.String(16)))


def downgrade() -> None:
    with op.batch_alter_table("mentions") as batch:
        batch.drop_column("detected_language")
