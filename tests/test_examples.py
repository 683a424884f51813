"""The example app (examples/todo_app) passes its own suite through the plugin.

The example is copied into pytester's directory and run in a subprocess, as a
user would run it, on the embedded SQLite default and on PostgreSQL. Afterwards
the test database must be gone (checked out of band), and the app's own
database (``DATABASE_URL``, ``./todo.db``) must never have been touched.
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

EXAMPLE = EXAMPLES / "todo_app"
"""The app the ``example`` fixture copies into pytester's directory."""


def test_example_on_embedded_sqlite(pytester: pytest.Pytester, example: Path) -> None:
    result = run_example(pytester)

    result.stdout.fnmatch_lines(
        ["*database test_alchemy on sqlite*: built (new database)*at the end: dropped"]
    )
    assert_embedded_database_dropped(example)
    assert not (example / "todo.db").exists(), "the app's own database is never opened"


@pytest.mark.postgresql
def test_example_on_postgresql(
    pytester: pytest.Pytester, example: Path, pg_server: sa.URL, pg_admin: sa.Engine
) -> None:
    with example_app_database(pg_admin, "todo") as app_db:
        url = pg_server.set(database=app_db).render_as_string(hide_password=False)
        result = run_example(pytester, "--alchemy-url", url)

        result.stdout.fnmatch_lines(
            [f"*database test_{app_db} on postgresql*: built (new database)*at the end: dropped"]
        )
        assert f"test_{app_db}" not in pg_databases(pg_admin), "the test database is dropped"
        assert not (example / "todo.db").exists(), "the app's own database is never opened"
