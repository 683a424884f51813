"""Articles: title and body, by an author.

Revision ID: 0003_articles
Revises: 0002_tokens
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_articles"
down_revision = "0002_tokens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "articles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"], name="fk_articles_author_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_articles"),
    )
    op.create_index("ix_articles_author_id", "articles", ["author_id"])


def downgrade() -> None:
    op.drop_index("ix_articles_author_id", table_name="articles")
    op.drop_table("articles")
