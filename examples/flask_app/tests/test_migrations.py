"""The schema is the migrations' (Flask-Migrate's ``migrations/``), applied once."""

from __future__ import annotations

import pytest
from alembic.script import ScriptDirectory
from blog_app import db, migrate
from blog_app.models import Category, Post
from flask.testing import FlaskClient
from sqlalchemy import inspect, text

from .api import sign_up

HEAD = "0002_categories"
DEFAULT_CATEGORIES = [
    {"slug": "general", "name": "General"},
    {"slug": "news", "name": "News"},
    {"slug": "releases", "name": "Releases"},
]


def test_the_database_is_at_the_head_revision(client: FlaskClient) -> None:
    script = ScriptDirectory.from_config(migrate.get_config())

    version = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()

    assert script.get_heads() == [HEAD]
    assert version == HEAD


def test_the_tables_are_the_migrations(client: FlaskClient) -> None:
    tables = set(inspect(db.engine).get_table_names())

    assert tables == {"alembic_version", "users", "posts", "comments", "categories"}


@pytest.mark.parametrize("turn", [1, 2])
def test_the_data_migrations_rows_are_in_every_test(client: FlaskClient, turn: int) -> None:
    assert client.get("/categories").json == DEFAULT_CATEGORIES
    assert Category.query.count() == 3


def test_a_test_may_change_the_migrated_rows(client: FlaskClient) -> None:
    db.session.execute(db.delete(Category).where(Category.slug == "news"))
    db.session.commit()

    assert [category["slug"] for category in client.get("/categories").json] == [
        "general",
        "releases",
    ]


def test_the_migrated_rows_are_back(client: FlaskClient) -> None:
    assert [category["slug"] for category in client.get("/categories").json] == [
        "general",
        "news",
        "releases",
    ]


def test_the_server_default_of_the_migration(client: FlaskClient) -> None:
    """``published`` defaults to false in the database itself, not only in the model."""
    ada = sign_up(client, "ada")
    db.session.execute(
        text("INSERT INTO posts (author_id, title, body) VALUES (:ada, 'raw', '')"),
        {"ada": ada},
    )

    assert db.session.execute(db.select(Post.published)).scalar_one() is False
