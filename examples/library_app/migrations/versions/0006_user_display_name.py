"""Users get a display name, back-filled from their email (a data migration).

The column is added nullable, filled in for the existing rows from the part of the
email before the @, and only then made NOT NULL.

Revision ID: 0006_user_display_name
Revises: 0005_article_created_at
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_user_display_name"
down_revision = "0005_article_created_at"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("display_name", sa.String(100), nullable=True))
    users = sa.table(
        "users",
        sa.column("id", sa.Integer()),
        sa.column("email", sa.String()),
        sa.column("display_name", sa.String()),
    )
    op.execute(
        users.update()
        .where(users.c.display_name.is_(None))
        .values(display_name=sa.func.left(sa.func.split_part(users.c.email, "@", 1), 100))
    )
    op.alter_column("users", "display_name", existing_type=sa.String(100), nullable=False)


def downgrade() -> None:
    op.drop_column("users", "display_name")
