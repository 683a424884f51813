"""The lifespan example (examples/lifespan_app) passes its own suite through the plugin.

The app makes its async engine in its lifespan handler from ``DATABASE_URL``; its
tests override the ``get_db`` dependency (``alchemy_async_override``) and bind the
sessionmaker the lifespan made (``alchemy_async_bind``). The example is copied into
pytester's directory and run in a subprocess, on the embedded SQLite default and on
PostgreSQL with asyncpg, with ``DATABASE_URL`` on a database nothing can reach: a
passing run proves the app's own engine never connected. Afterwards the test
database must be gone (checked out of band).
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

EXAMPLE = EXAMPLES / "lifespan_app"
"""The app the ``example`` fixture copies into pytester's directory."""


def test_example_on_embedded_sqlite(
    pytester: pytest.Pytester, example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = example / "missing"
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{missing / 'app.db'}")

    result = run_example(pytester, "-p", "no:randomly")

    result.stdout.fnmatch_lines(
        ["*database test_alchemy on sqlite*: built (new database)*at the end: dropped"]
    )
    assert_embedded_database_dropped(example)
    assert not missing.exists(), "the app's own engine never connected"
    assert not (example / "library.db").exists(), "the app's default database is never opened"


@pytest.mark.postgresql
def test_example_on_postgresql(
    pytester: pytest.Pytester,
    example: Path,
    monkeypatch: pytest.MonkeyPatch,
    pg_server: sa.URL,
    pg_admin: sa.Engine,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://app@db.invalid/app")
    with example_app_database(pg_admin, "library") as app_db:
        url = pg_server.set(drivername="postgresql+asyncpg", database=app_db)
        result = run_example(
            pytester,
            "-p",
            "no:randomly",
            "--alchemy-url",
            url.render_as_string(hide_password=False),
        )

        result.stdout.fnmatch_lines(
            [f"*database test_{app_db} on postgresql*: built (new database)*at the end: dropped"]
        )
        assert f"test_{app_db}" not in pg_databases(pg_admin), "the test database is dropped"
        assert app_db not in pg_databases(pg_admin), "the app's database is never created"
        assert list(example.rglob("*.db")) == [], "no SQLite file is ever opened"
