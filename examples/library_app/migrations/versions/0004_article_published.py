"""Articles are drafts until published.

Revision ID: 0004_article_published
Revises: 0003_articles
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_article_published"
down_revision = "0003_articles"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "articles",
        sa.Column("published", sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("articles", "published")
