"""Comments on articles.

Revision ID: 0009_comments
Revises: 0008_default_tags
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_comments"
down_revision = "0008_default_tags"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "comments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["articles.id"],
            name="fk_comments_article_id_articles",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"], name="fk_comments_author_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_comments"),
    )


def downgrade() -> None:
    op.drop_table("comments")
