"""Nothing hangs on a lock: every session on the test database inherits the lock bound.

A test's transaction holds the locks of what it wrote until the test ends. Code
under test that writes the same row through a connection of its own (the app's own
engine, a thread, a subprocess) waits for a transaction that cannot end before that
code returns: a self-deadlock. Promises checked here:

* on PostgreSQL ``lock_timeout`` is a default of the test database itself (checked
  in ``pg_db_role_setting``, also on a reused and a cloned database).

Each run has a subprocess timeout, so a regression fails instead of hanging the suite.
"""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

from pytest_alchemy.provision import Record, provisioner_for
from pytest_alchemy.runs import RunIdentity

from .helpers import Project, pg_databases, postgresql_only


def _settings(project: Project) -> list[object]:
    """The settings the test database gives every session that connects to it."""
    return project.sql(
        "SELECT s.setconfig FROM pg_db_role_setting s "
        "JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = :database",
        "postgres",
        database=project.test_name,
    )


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


def test_the_option_help_says_it_bounds_every_session(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    help_text = " ".join(result.stdout.str().split())
    assert "every session on the test database" in help_text
