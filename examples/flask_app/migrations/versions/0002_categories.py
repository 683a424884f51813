"""categories, with the default ones, and posts.category_id

Revision ID: 0002_categories
Revises: 0001_users_posts_comments
Create Date: 2025-02-03 10:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0002_categories"
down_revision = "0001_users_posts_comments"
branch_labels = None
depends_on = None

DEFAULT_CATEGORIES = [
    {"slug": "general", "name": "General"},
    {"slug": "news", "name": "News"},
    {"slug": "releases", "name": "Releases"},
]


def upgrade():
    categories = op.create_table(
        "categories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("slug"),
    )
    # A data migration: every database gets the default categories.
    op.bulk_insert(categories, DEFAULT_CATEGORIES)
    # SQLite cannot add a foreign key to a table: batch mode copies the table instead.
    with op.batch_alter_table("posts") as batch:
        batch.add_column(sa.Column("category_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_posts_category_id", "categories", ["category_id"], ["id"])


def downgrade():
    with op.batch_alter_table("posts") as batch:
        batch.drop_constraint("fk_posts_category_id", type_="foreignkey")
        batch.drop_column("category_id")
    op.drop_table("categories")
