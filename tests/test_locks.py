"""Nothing hangs on a lock: every session on the test database inherits the lock bound.

A test's transaction holds the locks of what it wrote until the test ends. Code
under test that writes the same row through a connection of its own (the app's own
engine, a thread, a subprocess) waits for a transaction that cannot end before that
code returns: a self-deadlock. Promises checked here:

* on PostgreSQL ``lock_timeout`` is a default of the test database itself (checked
  in ``pg_db_role_setting``, also on a reused and a cloned database), so such a wait
  fails within ``alchemy_lock_timeout`` and the failure names both sessions;
* on SQLite the plugin's connections wait at most ``alchemy_lock_timeout`` (their
  busy timeout) for a writer elsewhere, and a second connection waiting for the
  test's write lock fails with "database is locked" and the plugin's paragraph;
* the failure shows the paragraph once, not also the raw driver error and its
  traceback.

Each run has a subprocess timeout, so a regression fails instead of hanging the suite.
"""

from __future__ import annotations

import json
import os

import pytest
import sqlalchemy as sa

from pytest_alchemy.provision import Record, provisioner_for
from pytest_alchemy.runs import RunIdentity

from .helpers import Project, failure_reports, pg_databases, postgresql_only, sqlite_only

SEED_USER = "INSERT INTO users (id, name) VALUES (101, 'seed')"
"""The row the project's seeding writes after the schema is built (``Project.seed``)."""

SELF_DEADLOCK = """
import json
import time

import sqlalchemy as sa
from models import User


def update_elsewhere(url):
    # Code under test: an engine of its own, which the plugin does not manage.
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("UPDATE users SET name = 'app' WHERE id = 101")
    finally:
        engine.dispose()


def test_self_deadlock(alchemy_session, alchemy_database):
    alchemy_session.get(User, 101).name = "test"
    alchemy_session.flush()
    started = time.monotonic()
    try:
        update_elsewhere(alchemy_database.url)
    finally:
        with open("waited.json", "w") as file:
            json.dump(time.monotonic() - started, file)
"""

RAW_TRACEBACK = "The above exception was the direct cause of the following exception"


def _waited(project: Project) -> float:
    return float(json.loads((project.path / "waited.json").read_text()))


def _settings(project: Project) -> list[object]:
    """The settings the test database gives every session that connects to it."""
    return project.sql(
        "SELECT s.setconfig FROM pg_db_role_setting s "
        "JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = :database",
        "postgres",
        database=project.test_name,
    )


def _output(result: pytest.RunResult) -> str:
    return result.stdout.str() + "\n" + result.stderr.str()


@postgresql_only
def test_a_self_deadlock_fails_within_the_lock_timeout_naming_both_sessions(
    project: Project,
) -> None:
    project.ini(project.seed(SEED_USER))
    project.tests(SELF_DEADLOCK)
    result = project.run("--alchemy-lock-timeout=1", "--alchemy-keep-db", timeout=90)
    result.assert_outcomes(failed=1)
    # The lock timeout of the database, not a default of the driver or the server.
    assert 0.9 <= _waited(project) < 10
    assert _settings(project) == [(["lock_timeout=1000"],)]
    text = _output(result)
    # Both sessions: the waiting one with its statement, the holder as the test's own.
    assert "pytest-alchemy: A session the plugin does not manage (pid " in text
    assert "waited longer than alchemy_lock_timeout (1 s) for a lock" in text
    assert "running \"UPDATE users SET name = 'app' WHERE id = 101\"" in text
    assert "last statement: 'UPDATE users SET name=" in text
    assert "(the test's own connection)" in text
    assert "alchemy_app_sessions" in text
    # Once: no raw driver error with its traceback before the paragraph.
    # (The short summary below the failures repeats it, uncut under CI.)
    failures = failure_reports(text)
    assert failures.count("pytest-alchemy: A session the plugin does not manage") == 1
    assert RAW_TRACEBACK not in text
    assert "LockNotAvailable: canceling" not in text
    # The test's own write was rolled back; the other session never wrote.
    assert project.sql("SELECT name FROM users") == [("seed",)]


ONE_TEST = """
def test_db(alchemy_connection):
    pass
"""


@postgresql_only
def test_a_reused_database_gets_the_lock_bound_of_the_current_run(project: Project) -> None:
    project.tests(ONE_TEST)
    project.run("--alchemy-reuse-db", "--alchemy-lock-timeout=3", timeout=90).assert_outcomes(
        passed=1
    )
    assert _settings(project) == [(["lock_timeout=3000"],)]
    result = project.run("--alchemy-reuse-db", "--alchemy-lock-timeout=2.5", timeout=90)
    result.assert_outcomes(passed=1)
    assert "reused" in result.stdout.str()
    assert _settings(project) == [(["lock_timeout=2500"],)]


@pytest.mark.postgresql
def test_a_cloned_database_gets_the_lock_bound(pg_server: sa.URL, pg_admin: sa.Engine) -> None:
    """``CREATE DATABASE ... TEMPLATE`` does not copy a database's settings."""
    backend = provisioner_for(pg_server.set(database="app"), "test_", lock_timeout=1.5)
    template, clone = f"test_app_template_{os.getpid()}", f"test_app_clone_{os.getpid()}"
    record = Record(kind="run", state="in_use", owner=RunIdentity.current())
    try:
        backend.create(template, record)
        backend.clone(template, clone, record)
        with pg_admin.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT d.datname, s.setconfig FROM pg_db_role_setting s "
                    "JOIN pg_database d ON d.oid = s.setdatabase "
                    "WHERE d.datname IN (:template, :clone) ORDER BY d.datname"
                ),
                {"template": template, "clone": clone},
            ).all()
        assert [tuple(row) for row in rows] == [
            (clone, ["lock_timeout=1500"]),
            (template, ["lock_timeout=1500"]),
        ]
    finally:
        backend.drop(clone)
        backend.drop(template)
        backend.close()
    assert not {template, clone} & pg_databases(pg_admin)


SQLITE_LOCKS = """
import json
import sqlite3
import time

import pytest
import sqlalchemy as sa
from models import User


def test_the_plugins_connections_wait_the_lock_timeout(alchemy_connection):
    assert alchemy_connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1000


@pytest.mark.asyncio
async def test_the_async_ones_too(alchemy_async_connection):
    result = await alchemy_async_connection.exec_driver_sql("PRAGMA busy_timeout")
    assert result.scalar() == 1000


def test_waits_for_a_writer_elsewhere(alchemy_session, alchemy_database):
    other = sqlite3.connect(alchemy_database.url.database, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    try:
        alchemy_session.add(User(name="mine"))
        alchemy_session.flush()
    finally:
        with open("waited_for_other.json", "w") as file:
            json.dump(time.monotonic() - started, file)
        other.execute("ROLLBACK")
        other.close()


def test_self_deadlock(alchemy_session, alchemy_database):
    alchemy_session.get(User, 101).name = "test"
    alchemy_session.flush()
    # Code under test: an engine of its own, with the driver's busy timeout.
    engine = sa.create_engine(alchemy_database.url, connect_args={"timeout": 0.5})
    started = time.monotonic()
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("UPDATE users SET name = 'app' WHERE id = 101")
    finally:
        with open("waited.json", "w") as file:
            json.dump(time.monotonic() - started, file)
        engine.dispose()
"""


@sqlite_only
def test_sqlite_writers_wait_at_most_their_busy_timeout_and_are_explained(
    project: Project,
) -> None:
    project.ini(project.seed(SEED_USER))
    project.tests(SQLITE_LOCKS)
    result = project.run(
        "--alchemy-lock-timeout=1", "--alchemy-keep-db", "-p", "no:randomly", timeout=90
    )
    result.assert_outcomes(passed=2, failed=2)
    # The plugin's connection waits its busy timeout, alchemy_lock_timeout, for the other.
    waited = float(json.loads((project.path / "waited_for_other.json").read_text()))
    assert 0.9 <= waited < 10
    # The app's connection waits its own busy timeout for the test's write lock.
    assert 0.4 <= _waited(project) < 10
    text = _output(result)
    assert (
        "database is locked - pytest-alchemy: the test's own connection waited longer than "
        "alchemy_lock_timeout (1 s, its busy timeout)" in text
    )
    assert (
        "database is locked - pytest-alchemy: a test is running inside an open transaction" in text
    )
    failures = failure_reports(text)
    assert failures.count("pytest-alchemy: a test is running inside an open transaction") == 1
    assert RAW_TRACEBACK not in text
    assert project.sql("SELECT name FROM users") == [("seed",)]


def test_the_option_help_says_it_bounds_every_session(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    help_text = " ".join(result.stdout.str().split())
    assert "every session on the test database" in help_text
