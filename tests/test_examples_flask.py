"""The Flask example (examples/flask_app) passes its own suite through the plugin.

The app is a Flask-SQLAlchemy 3 blog with an application factory that runs
Flask-Migrate's ``upgrade()`` at start-up; its only test configuration is
``alchemy_flask_app = "blog_app:create_app"``, and its conftest.py only makes the test
client. The plugin finds ``migrations/alembic.ini`` and builds the schema with those
migrations. The example is copied into pytester's directory and run in a subprocess,
on the embedded SQLite default and on PostgreSQL, with ``DATABASE_URL`` on a database
nothing can reach: a passing run proves the factory's engines never connected to it.
Checked out of band afterwards: the test database is dropped, and the template kept
for the next run is at the head revision with the data migration's rows in it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from .helpers import EXAMPLES, example_app_database, pg_databases, run_example

EXAMPLE = EXAMPLES / "flask_app"
"""The app the ``example`` fixture copies into pytester's directory."""
HEAD = "0002_categories"
CATEGORIES = ["general", "news", "releases"]
"""The rows the data migration (``0002_categories``) inserts."""


def migrated(engine: sa.Engine) -> tuple[object, list[str]]:
    """The revision of the database ``engine`` leads to, and its categories."""
    try:
        with engine.connect() as connection:
            version = connection.execute(sa.text("SELECT version_num FROM alembic_version"))
            slugs = connection.execute(sa.text("SELECT slug FROM categories ORDER BY slug"))
            return version.scalar(), list(slugs.scalars())
    finally:
        engine.dispose()


def test_example_on_embedded_sqlite(
    pytester: pytest.Pytester, example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = example / "missing"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{missing / 'blog.db'}")

    result = run_example(pytester, "-p", "no:randomly")

    result.stdout.fnmatch_lines(
        [
            "*database test_alchemy on sqlite*: built (new database)*"
            "schema alembic (head *, 2 revisions)*at the end: dropped"
        ]
    )
    folder = example / ".pytest_cache" / "d" / "alchemy"
    left = sorted(path.name for path in folder.iterdir())
    # The template of the schema (and its build lock) stays for the next run to copy.
    assert [name for name in left if "_tpl_" not in name and not name.endswith(".lock")] == [], (
        "the test database is dropped"
    )
    templates = sorted(folder.glob("test_alchemy_tpl_*.db"))
    assert len(templates) == 1, left
    template = sa.create_engine(f"sqlite:///{templates[0]}", poolclass=sa.pool.NullPool)
    assert migrated(template) == (HEAD, CATEGORIES)
    assert not missing.exists(), "the app's own database is never opened"
    assert not (example / "instance").exists(), "nor its default one in the instance folder"
    assert [path for path in example.rglob("*.db") if folder not in path.parents] == []


@pytest.mark.postgresql
def test_example_on_postgresql(
    pytester: pytest.Pytester,
    example: Path,
    monkeypatch: pytest.MonkeyPatch,
    pg_server: sa.URL,
    pg_admin: sa.Engine,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://app@db.invalid/app")
    with example_app_database(pg_admin, "blog") as app_db:
        test_db = f"test_{app_db}"
        url = pg_server.set(drivername="postgresql+psycopg", database=app_db)
        result = run_example(
            pytester,
            "-p",
            "no:randomly",
            "--alchemy-url",
            url.render_as_string(hide_password=False),
        )

        result.stdout.fnmatch_lines(
            [
                f"*database {test_db} on postgresql*: built (new database)*"
                "schema alembic (head *, 2 revisions)*at the end: dropped"
            ]
        )
        databases = pg_databases(pg_admin)
        assert test_db not in databases, "the test database is dropped"
        assert app_db not in databases, "the app's database is never created"
        templates = sorted(name for name in databases if name.startswith(f"{test_db}_tpl_"))
        assert len(templates) == 1, sorted(databases)
        template = sa.create_engine(pg_server.set(database=templates[0]), poolclass=sa.NullPool)
        assert migrated(template) == (HEAD, CATEGORIES)
        assert list(example.rglob("*.db")) == [], "no SQLite file is ever opened"
        assert not (example / "instance").exists()
