"""When each article was written.

Revision ID: 0005_article_created_at
Revises: 0004_article_published
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_article_created_at"
down_revision = "0004_article_published"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "articles",
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("articles", "created_at")
