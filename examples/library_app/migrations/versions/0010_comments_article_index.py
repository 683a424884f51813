"""Comments are listed by article: index them so.

Revision ID: 0010_comments_article_index
Revises: 0009_comments
"""

from __future__ import annotations

from alembic import op

revision = "0010_comments_article_index"
down_revision = "0009_comments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_comments_article_id", "comments", ["article_id"])


def downgrade() -> None:
    op.drop_index("ix_comments_article_id", table_name="comments")
