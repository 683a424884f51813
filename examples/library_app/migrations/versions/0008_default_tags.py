"""The default tags every library starts with (a data migration).

Revision ID: 0008_default_tags
Revises: 0007_tags
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_default_tags"
down_revision = "0007_tags"
branch_labels = None
depends_on = None

DEFAULT_TAGS = ("databases", "news", "python", "testing")

tags = sa.table("tags", sa.column("id", sa.Integer()), sa.column("name", sa.String()))


def upgrade() -> None:
    op.bulk_insert(tags, [{"name": name} for name in DEFAULT_TAGS])


def downgrade() -> None:
    op.execute(tags.delete().where(tags.c.name.in_(DEFAULT_TAGS)))
