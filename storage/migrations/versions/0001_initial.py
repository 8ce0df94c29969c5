"""Mentions, their brands, their scores, and collection cursors.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "mentions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(512), nullable=False),
        sa.Column("platform", sa.String(64), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("author", sa.String(256), nullable=False),
        sa.Column("author_followers", sa.Integer),
        sa.Column("engagement", sa.Integer),
        sa.Column("language", sa.String(16)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("collected_at", _utc(), nullable=False),
        sa.UniqueConstraint("source", "external_id", name="uq_mentions_source_external_id"),
    )
    op.create_index("ix_mentions_created_at", "mentions", ["created_at"])
    op.create_table(
        "mention_brands",
        sa.Column("mention_id", sa.Integer, sa.ForeignKey("mentions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("brand", sa.String(128), primary_key=True),
    )
    op.create_index("ix_mention_brands_brand", "mention_brands", ["brand"])
    op.create_table(
        "scores",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("mention_id", sa.Integer, sa.ForeignKey("mentions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("model_id", sa.String(256), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("negative", sa.Float, nullable=False),
        sa.Column("neutral", sa.Float, nullable=False),
        sa.Column("positive", sa.Float, nullable=False),
        sa.Column("scored_at", _utc(), nullable=False),
        sa.UniqueConstraint("mention_id", "model_id", "model_version", name="uq_scores_mention_model"),
    )
    op.create_index("ix_scores_mention_id", "scores", ["mention_id"])
    op.create_table(
        "cursors",
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("query", sa.String(512), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cursors")
    op.drop_table("scores")
    op.drop_table("mention_brands")
    op.drop_table("mentions")
