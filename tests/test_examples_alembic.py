"""The Alembic example app (examples/library_app) passes its own suite through the plugin.

The example reads ``DATABASE_URL`` when it is imported, builds its schema with eleven
Alembic migrations whose ``env.py`` uses the app's own engine, needs ``pg_trgm`` from
the init SQL, and logs a user in once per module in a seed layer. It is copied into
pytester's directory and run in a subprocess against the suite's PostgreSQL, twice:
cold (the migrations run) and again (the schema comes from the template the first run
kept). Checked out of band: the test database is dropped at the end, the app's own
database (``library_<n>``) is never created, and the kept template is at the head
revision with the extension and the default tags of the data migration in it.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from .helpers import EXAMPLES, drop_databases, pg_databases

EXAMPLE = EXAMPLES / "library_app"
"""The app the ``example`` fixture copies into pytester's directory."""
HEAD = "0011_title_trigram_index"
MIGRATION_CHECKS = (
    "alembic_single_head",
    "alembic_upgrade",
    "alembic_roundtrip",
    "alembic_drift",
    "alembic_downgrade_check",
)
DEFAULT_TAGS = ["databases", "news", "python", "testing"]


def example_test_count() -> int:
    return sum(
        len(re.findall(r"^def test_", path.read_text(), re.MULTILINE))
        + len(re.findall(r"^@pytest\.mark\.parametrize", path.read_text(), re.MULTILINE))
        for path in (EXAMPLE / "tests").glob("test_*.py")
    )


def test_the_example_has_a_real_suite_and_migration_chain() -> None:
    assert example_test_count() >= 12
    revisions = sorted((EXAMPLE / "migrations" / "versions").glob("*.py"))
    assert len(revisions) >= 10
    assert all("def downgrade() -> None:\n    op." in path.read_text() for path in revisions)
    assert revisions[-1].stem == HEAD


def run_example(pytester: pytest.Pytester, url: str) -> pytest.RunResult:
    result = pytester.runpytest_subprocess("--alchemy-url", url, "-rA", "-p", "no:randomly")
    output = result.stdout.str()
    outcomes = result.parseoutcomes()
    assert set(outcomes) == {"passed"}, output
    assert outcomes["passed"] >= example_test_count() + len(MIGRATION_CHECKS), output
    for check in MIGRATION_CHECKS:
        assert f"PASSED alembic.ini::{check}" in output, f"{check} did not pass:\n{output}"
    assert result.ret == pytest.ExitCode.OK
    return result


def template_of(admin: sa.Engine, test_db: str) -> str:
    templates = sorted(name for name in pg_databases(admin) if name.startswith(f"{test_db}_tpl_"))
    assert len(templates) == 1, templates
    return templates[0]


@pytest.mark.postgresql
def test_example_on_postgresql(
    pytester: pytest.Pytester, example: Path, pg_server: sa.URL, pg_admin: sa.Engine
) -> None:
    app_db = f"library_{os.getpid()}"
    test_db = f"test_{app_db}"
    url = pg_server.set(database=app_db).render_as_string(hide_password=False)
    try:
        cold = run_example(pytester, url)

        cold.stdout.fnmatch_lines(
            [
                f"*database {test_db} on postgresql*: built*"
                f"schema alembic (head {HEAD}, 11 revisions)*at the end: dropped"
            ]
        )
        assert "copied from template" not in cold.stdout.str(), "the first run migrates"
        databases = pg_databases(pg_admin)
        assert test_db not in databases, "the test database is dropped"
        assert f"{test_db}_migrations" not in databases, "the checks' database is dropped"
        assert app_db not in databases, "the app's own database is never created"
        template = template_of(pg_admin, test_db)
        engine = sa.create_engine(pg_server.set(database=template), poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as connection:
                version = connection.exec_driver_sql("SELECT version_num FROM alembic_version")
                assert version.scalars().all() == [HEAD], "the migrations ran up to the head"
                extensions = connection.exec_driver_sql("SELECT extname FROM pg_extension")
                assert "pg_trgm" in extensions.scalars().all(), "the init SQL ran"
                tags = connection.exec_driver_sql("SELECT name FROM tags ORDER BY name")
                assert tags.scalars().all() == DEFAULT_TAGS, "the data migration ran"
                users = connection.exec_driver_sql("SELECT count(*) FROM users")
                assert users.scalar() == 0, "the layers' users never reach the template"
        finally:
            engine.dispose()

        cached = run_example(pytester, url)

        cached.stdout.fnmatch_lines(
            [
                f"*database {test_db} on postgresql*: *schema alembic*"
                f"copied from template {template[-16:][:8]}*at the end: dropped"
            ]
        )
        assert template_of(pg_admin, test_db) == template, "the same template serves"
        databases = pg_databases(pg_admin)
        assert test_db not in databases
        assert app_db not in databases
    finally:
        drop_databases(
            pg_admin, [name for name in pg_databases(pg_admin) if name.startswith(app_db)]
        )
        drop_databases(
            pg_admin, [name for name in pg_databases(pg_admin) if name.startswith(test_db)]
        )


def alembic(pytester: pytest.Pytester, *args: str) -> None:
    result = pytester.run(sys.executable, "-m", "alembic", *args, timeout=120)
    assert result.ret == 0, result.stderr.str()


@pytest.mark.postgresql
def test_the_data_migration_back_fills_display_names(
    pytester: pytest.Pytester,
    example: Path,
    pg_server: sa.URL,
    pg_admin: sa.Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """0006 adds users.display_name NOT NULL and fills it in for the users already there."""
    app_db = f"library_backfill_{os.getpid()}"
    url = pg_server.set(database=app_db)
    with pg_admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{app_db}"')
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    monkeypatch.setenv("DATABASE_URL", url.render_as_string(hide_password=False))
    try:
        alembic(pytester, "upgrade", "0005_article_created_at")
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO users (email, password_hash) VALUES "
                "('ada@example.com', 'x'), ('grace.hopper@navy.mil', 'x')"
            )

        alembic(pytester, "upgrade", "0006_user_display_name")

        with engine.connect() as connection:
            names = connection.exec_driver_sql(
                "SELECT email, display_name FROM users ORDER BY id"
            ).all()
            nullable = connection.exec_driver_sql(
                "SELECT is_nullable FROM information_schema.columns "
                "WHERE table_name = 'users' AND column_name = 'display_name'"
            ).scalar()
        assert [tuple(row) for row in names] == [
            ("ada@example.com", "ada"),
            ("grace.hopper@navy.mil", "grace.hopper"),
        ]
        assert nullable == "NO"

        alembic(pytester, "downgrade", "0005_article_created_at")
        with engine.connect() as connection:
            count = connection.exec_driver_sql("SELECT count(*) FROM users").scalar()
        assert count == 2, "the downgrade keeps the users"
    finally:
        engine.dispose()
        drop_databases(pg_admin, [app_db])
