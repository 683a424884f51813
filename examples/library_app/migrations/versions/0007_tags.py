"""Tags, and which articles have them.

Revision ID: 0007_tags
Revises: 0006_user_display_name
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_tags"
down_revision = "0006_user_display_name"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(50), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tags"),
        sa.UniqueConstraint("name", name="uq_tags_name"),
    )
    op.create_table(
        "article_tags",
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("tag_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["articles.id"],
            name="fk_article_tags_article_id_articles",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tag_id"], ["tags.id"], name="fk_article_tags_tag_id_tags", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("article_id", "tag_id", name="pk_article_tags"),
    )


def downgrade() -> None:
    op.drop_table("article_tags")
    op.drop_table("tags")
