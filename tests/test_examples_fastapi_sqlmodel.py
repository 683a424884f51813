"""The FastAPI + SQLModel example (examples/fastapi_sqlmodel_app) passes its own suite.

The example is laid out like the FastAPI project templates: settings read
``DATABASE_URL`` from the environment, ``core/db.py`` makes a module-level engine
from it, ``get_db`` opens ``Session(engine)``, and ``init_db`` seeds the first
superuser. Its conftest holds no database code: ``alchemy_env``, ``alchemy_seed``
and ``alchemy_app_sessions`` do it all.

It is copied into pytester's directory and run in a subprocess, as a user would run
it, on the embedded SQLite default and on PostgreSQL, with ``DATABASE_URL`` set to
the app's own database. Afterwards the test database must be gone (checked out of
band), and the app's own database must be as it was: never created on SQLite,
its rows unchanged on PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from .helpers import (
    EXAMPLES,
    assert_embedded_database_dropped,
    example_app_database,
    pg_databases,
    run_example,
)

EXAMPLE = EXAMPLES / "fastapi_sqlmodel_app"
"""The app the ``example`` fixture copies into pytester's directory."""
APP_SETTINGS = ("PROJECT_NAME", "FIRST_SUPERUSER", "FIRST_SUPERUSER_PASSWORD")
"""The example's other settings: the subprocess must see their defaults."""
SEEDED = "*seeded by shop_app.core.db:init_db*at the end: dropped"


@pytest.fixture
def app_settings(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The environment with none of the example's settings but the ones a test sets."""
    for name in APP_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_example_on_embedded_sqlite(
    pytester: pytest.Pytester, example: Path, app_settings: pytest.MonkeyPatch
) -> None:
    app_db = example / "data" / "shop.db"
    app_settings.setenv("DATABASE_URL", f"sqlite:///{app_db}")

    result = run_example(pytester)

    result.stdout.fnmatch_lines(
        [
            "*alchemy env: DATABASE_URL=sqlite:///*test_alchemy.db*",
            f"*database test_alchemy on sqlite*: built (new database)*{SEEDED}",
        ]
    )
    assert_embedded_database_dropped(example)
    assert not app_db.parent.exists(), "the app's own database is never opened"
    assert not (example / "shop.db").exists(), "nor the settings' default, ./shop.db"


@pytest.mark.postgresql
def test_example_on_postgresql(
    pytester: pytest.Pytester,
    example: Path,
    app_settings: pytest.MonkeyPatch,
    pg_server: sa.URL,
    pg_admin: sa.Engine,
) -> None:
    with example_app_database(pg_admin, "shop") as app_db:
        url = pg_server.set(database=app_db)
        with pg_admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{app_db}"')
        app_engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with app_engine.begin() as connection:
                connection.exec_driver_sql(
                    'CREATE TABLE "user" (id SERIAL PRIMARY KEY, email TEXT)'
                )
                connection.exec_driver_sql(
                    """INSERT INTO "user" (email) VALUES ('real@example.com')"""
                )
            app_settings.setenv("DATABASE_URL", url.render_as_string(hide_password=False))

            result = run_example(
                pytester, "--alchemy-url", url.render_as_string(hide_password=False)
            )

            result.stdout.fnmatch_lines(
                [
                    f"*alchemy env: DATABASE_URL=postgresql*/test_{app_db}[? ]*",
                    f"*database test_{app_db} on postgresql*: built (new database)*{SEEDED}",
                ]
            )
            assert f"test_{app_db}" not in pg_databases(pg_admin), "the test database is dropped"
            with app_engine.connect() as connection:
                rows = connection.exec_driver_sql('SELECT id, email FROM "user"').all()
                tables = connection.exec_driver_sql(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                ).scalars()
                assert [tuple(row) for row in rows] == [(1, "real@example.com")], (
                    "the app's own database is never written"
                )
                assert list(tables) == ["user"], "nor is the app's schema built there"
            assert not (example / "shop.db").exists(), "nor is the settings' default opened"
        finally:
            app_engine.dispose()
