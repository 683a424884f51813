"""A trigram index on article titles, for GET /search.

gin_trgm_ops comes from the pg_trgm extension, which the database must have before
this runs (CREATE EXTENSION pg_trgm; in the tests, alchemy_init_sql).

Revision ID: 0011_title_trigram_index
Revises: 0010_comments_article_index
"""

from __future__ import annotations

from alembic import op

revision = "0011_title_trigram_index"
down_revision = "0010_comments_article_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_articles_title_trgm",
        "articles",
        ["title"],
        postgresql_using="gin",
        postgresql_ops={"title": "gin_trgm_ops"},
    )


def downgrade() -> None:
    op.drop_index("ix_articles_title_trgm", table_name="articles")
