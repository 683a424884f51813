"""The async example app's own test suite passes, on SQLite and on PostgreSQL with asyncpg.

The example (``examples/async_app``) is copied into pytester's directory and
its suite run there in a subprocess, as a user would run it: the embedded
SQLite default through aiosqlite, then ``--alchemy-url postgresql+asyncpg://``
on the suite's PostgreSQL. Either way every test passes and the test database
is gone afterwards.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy.engine import URL, Engine

from .helpers import EXAMPLES, pg_databases

EXAMPLE = EXAMPLES / "async_app"
"""The app the ``example`` fixture copies into pytester's directory."""


def example_test_count() -> int:
    return sum(
        len(re.findall(r"^async def test_", path.read_text(), re.MULTILINE))
        for path in (EXAMPLE / "tests").glob("test_*.py")
    )


def test_the_example_has_a_real_suite() -> None:
    assert example_test_count() >= 20


def test_example_suite_on_the_embedded_sqlite_default(
    pytester: pytest.Pytester, example: Path
) -> None:
    result = pytester.runpytest_subprocess("-p", "no:randomly")

    result.assert_outcomes(passed=example_test_count())
    result.stdout.fnmatch_lines(
        ["alchemy: *embedded SQLite default*", "*on sqlite*: built*dropped"]
    )
    # The template of the schema stays for the next run to copy.
    left = [path for path in example.rglob("*.db") if "_tpl_" not in path.name]
    assert left == [], "the test database file is removed"


@pytest.mark.postgresql
def test_example_suite_on_postgresql_with_asyncpg(
    pytester: pytest.Pytester, example: Path, pg_server: URL, pg_admin: Engine
) -> None:
    app_db = f"shop_{abs(hash(str(example))) % 10**8}"
    url = pg_server.set(drivername="postgresql+asyncpg", database=app_db)

    result = pytester.runpytest_subprocess(
        "--alchemy-url", url.render_as_string(hide_password=False), "-p", "no:randomly"
    )

    result.assert_outcomes(passed=example_test_count())
    result.stdout.fnmatch_lines([f"*database test_{app_db} on postgresql*: built*dropped"])
    assert f"test_{app_db}" not in pg_databases(pg_admin)
    assert list(example.rglob("*.db")) == [], "the app's own SQLite engine was never used"
