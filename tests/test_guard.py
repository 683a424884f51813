"""The safety guard: only test databases are ever created, emptied or dropped.

Unit tests show the guard runs before any statement is sent (a backend pointed at a
server that does not exist still refuses with a ``SafetyError``, never a connection
error). End-to-end runs point the plugin at a "production" database with rows in it
and check out of band that every row survives every lifecycle flag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
import sqlalchemy.dialects.postgresql
import sqlalchemy.dialects.sqlite
from sqlalchemy.engine import URL, make_url

from pytest_alchemy.errors import PREFIX, ProvisionError, SafetyError
from pytest_alchemy.provision import Guard, Record, provisioner_for
from pytest_alchemy.provision.postgresql import PostgreSQLProvisioner
from pytest_alchemy.provision.sqlite import SQLiteProvisioner
from pytest_alchemy.tables import TableRef

from .helpers import Project

# Imported at collection, before any test runs: pytester drops the modules first
# imported during a test, and a second import of a SQLAlchemy dialect or driver makes
# SQLAlchemy warn and leaves two copies of the driver's exception classes.
PRELOADED = (psycopg, sqlalchemy.dialects.postgresql, sqlalchemy.dialects.sqlite)

UNREACHABLE = "postgresql+psycopg://nobody:secret@127.0.0.1:1/app"
RECORD = Record(kind="run", state="building", owner=None)


USERS = TableRef(None, "users")


class Recorder:
    """A stand-in connection that records every statement sent to it."""

    def __init__(self, url: str | URL = UNREACHABLE) -> None:
        self.sent: list[str] = []
        self.dialect = make_url(url).get_dialect()()

    def exec_driver_sql(self, statement: str, *args: Any) -> None:
        self.sent.append(statement)

    def execute(self, statement: Any, *args: Any) -> None:
        self.sent.append(str(statement))


# -- the guard on its own ----------------------------------------------------------------------


def refusal(guard: Guard, action: str, name: str) -> str | None:
    """The guard's message when it refuses ``action`` on ``name``; None when it lets it through."""
    try:
        guard.check(action, name)
    except SafetyError as error:
        return str(error)
    return None


def test_the_guard_lets_test_databases_through() -> None:
    guard = Guard("test_", "app")
    seen = {
        (action, name): refusal(guard, action, name)
        for name in ("test_app", "test_app_gw0", "test_x")
        for action in ("create", "drop", "empty tables of")
    }
    assert len(seen) == 9
    assert {key: text for key, text in seen.items() if text is not None} == {}
    # The URL's own database is fine when its name says it is a test database.
    assert refusal(Guard("test_", "test_app"), "drop", "test_app") is None
    assert refusal(Guard("ci_", "testing"), "drop", "ci_x") is None
    # The same guard does refuse: what passed above passed on its name.
    assert refusal(guard, "drop", "app") is not None


@pytest.mark.parametrize(
    ("prefix", "protected", "name", "expected"),
    [
        ("test_", "app", "app", "does not start with the test prefix 'test_'"),
        ("test_", "app", "production", "does not start with the test prefix 'test_'"),
        ("test_", None, "tes", "does not start with the test prefix 'test_'"),
        ("test_", "app", "Test_app", "does not start with the test prefix 'test_'"),
        ("ci_", "ci_app", "ci_app", "it is the database named in your URL"),
        ("prod_", "prod_app", "prod_app", "it is the database named in your URL"),
        ("", "app", "test_app", "the test prefix is empty"),
    ],
)
def test_the_guard_refuses(prefix: str, protected: str | None, name: str, expected: str) -> None:
    guard = Guard(prefix, protected)
    for action in ("create", "drop", "empty tables of"):
        with pytest.raises(SafetyError) as caught:
            guard.check(action, name, f"shown {name}")
        text = str(caught.value)
        assert text.startswith(PREFIX)
        assert f"refusing to {action}" in text
        assert expected in text


def test_a_prefixed_name_other_than_the_url_database_passes_a_custom_prefix() -> None:
    guard = Guard("ci_", "ci_app")
    guard.check("create", "ci_app_gw0")
    with pytest.raises(SafetyError):
        guard.check("create", "test_app")


# -- backends ask the guard first ---------------------------------------------------------------


def test_postgresql_refuses_before_connecting() -> None:
    backend = PostgreSQLProvisioner(make_url(UNREACHABLE), "test_", lock_timeout=1)
    try:
        for name in ("app", "postgres", "template1", "production"):
            with pytest.raises(SafetyError, match="refusing to create"):
                backend.create(name, RECORD)
            with pytest.raises(SafetyError, match="refusing to drop"):
                backend.drop(name)
            with pytest.raises(SafetyError, match="refusing to empty tables of"):
                backend.checks(name).empty_tables(Recorder(), [USERS])
        assert backend._connectors == {}  # no connection was even set up
        # A test database name passes the guard and only then meets the missing server.
        with pytest.raises(ProvisionError, match="cannot reach the PostgreSQL server") as caught:
            backend.create("test_app", RECORD)
        assert "secret" not in str(caught.value)
    finally:
        backend.close()


def test_the_url_database_is_protected_even_with_the_prefix() -> None:
    url = make_url(UNREACHABLE).set(database="ci_app")
    backend = provisioner_for(url, "ci_", lock_timeout=1)
    try:
        with pytest.raises(SafetyError, match="database named in your URL"):
            backend.drop("ci_app")
        with pytest.raises(SafetyError, match="database named in your URL"):
            backend.create("ci_app", RECORD)
    finally:
        backend.close()


def test_sqlite_refuses_before_touching_a_file(tmp_path: Path) -> None:
    app = tmp_path / "app.db"
    app.write_bytes(b"precious")
    Path(str(app) + ".alchemy.json").write_text("{}")
    backend = SQLiteProvisioner(make_url(f"sqlite:///{app}"), "test_", lock_timeout=1)
    with pytest.raises(SafetyError, match="refusing to drop"):
        backend.drop("app")
    with pytest.raises(SafetyError, match="refusing to create"):
        backend.create("app", RECORD)
    with pytest.raises(SafetyError, match="refusing to create"):
        backend.create("other", RECORD)
    assert app.read_bytes() == b"precious"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["app.db", "app.db.alchemy.json"]
    # The allowed name works for real, and lands next to the app database.
    backend.create("test_app", RECORD)
    assert (tmp_path / "test_app.db").is_file()
    backend.drop("test_app")
    assert not (tmp_path / "test_app.db").exists()
    assert app.read_bytes() == b"precious"


@pytest.mark.parametrize("url", [UNREACHABLE, "sqlite:////nowhere/app.db"])
def test_emptying_and_dropping_tables_send_nothing_to_a_non_test_database(url: str) -> None:
    backend = provisioner_for(make_url(url), "test_", lock_timeout=1)
    connection: Any = Recorder(backend.url)
    with pytest.raises(SafetyError, match="refusing to empty tables of"):
        backend.checks("app").empty_tables(connection, [USERS])
    with pytest.raises(SafetyError, match="refusing to drop tables of"):
        backend.checks("app").drop_tables(connection, [USERS])
    with pytest.raises(SafetyError, match="refusing to end sessions on"):
        backend.checks("app").end_sessions(connection, [1234])
    assert connection.sent == []
    backend.checks("test_app").empty_tables(connection, [USERS])
    assert connection.sent  # the same call on a test database does send statements


# -- end to end: a production database next to the test database --------------------------------

WRITERS = """
import pytest
from sqlalchemy import func, select, text
from models import User


def test_commits(alchemy_session):
    alchemy_session.add(User(name="test"))
    alchemy_session.commit()
    assert alchemy_session.scalar(select(func.count()).select_from(User)) == 1


@pytest.mark.alchemy_db(isolation="none")
def test_commits_for_real(alchemy_connection):
    alchemy_connection.execute(text("INSERT INTO users (id, name) VALUES (1, 'x')"))
    alchemy_connection.commit()
    alchemy_connection.execute(text("DELETE FROM users"))
    alchemy_connection.commit()


def test_database_is_the_test_one(alchemy_database):
    assert alchemy_database.name.startswith("test_")
"""


def app_rows(project: Project, name: str | None = None) -> list[Any]:
    return project.sql("SELECT id, name FROM users ORDER BY id", name or project.app_db)


def app_record(project: Project, name: str | None = None) -> str | None:
    """Whatever the plugin might have written next to the app database (nothing, we expect)."""
    name = name or project.app_db
    if project.backend == "sqlite":
        sidecar = project.path / "data" / f"{name}.db.alchemy.json"
        return sidecar.read_text() if sidecar.exists() else None
    assert project.admin is not None
    with project.admin.connect() as connection:
        comment = connection.execute(
            sa.text(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                "WHERE datname = :name"
            ),
            {"name": name},
        ).scalar()
    return str(comment) if comment is not None else None


def test_the_app_database_keeps_every_row_whatever_the_flags(project: Project) -> None:
    project.create_app_database(rows=3)
    expected = [(1, "real 0"), (2, "real 1"), (3, "real 2")]
    project.tests(WRITERS)
    for flags in (
        (),
        ("--alchemy-keep-db",),
        ("--alchemy-reuse-db",),
        ("--alchemy-reuse-db", "--alchemy-create-db"),
        ("--alchemy-reuse-db", "--alchemy-drop-db"),
    ):
        result = project.run(*flags)
        result.assert_outcomes(passed=3)
        assert app_rows(project) == expected, flags
        assert app_record(project) is None, flags
    assert not project.exists()
    if project.backend == "sqlite":
        # Beside the app's file: only the schema's template (and its build lock).
        left = sorted(path.name for path in (project.path / "data").iterdir())
        assert [name for name in left if not name.startswith((".alchemy-", "test_app_tpl_"))] == [
            "app.db"
        ]


def test_a_test_database_equal_to_the_url_database_is_refused(project: Project) -> None:
    """With prefix ci_, the URL database ci_app would be its own test database: refused."""
    app = f"ci_{project.app_db}"
    project.create_app_database(app, rows=3)
    project.ini("alchemy_test_prefix = ci_")
    project.tests(WRITERS)
    url = project.url_with(app).render_as_string(hide_password=False)
    for flags in ((), ("--alchemy-reuse-db", "--alchemy-drop-db")):
        result = project.run("--alchemy-url", url, *flags, url=False)
        result.assert_outcomes(errors=3)
        output = result.stdout.str()
        assert "refusing to drop the database" in output
        assert "it is the database named in your URL" in output
        assert "Traceback" not in output
        assert app_rows(project, app) == [(1, "real 0"), (2, "real 1"), (3, "real 2")]
        assert app_record(project, app) is None
        assert project.sql("SELECT count(*) FROM users", app) == [(3,)]
    if project.backend == "sqlite":
        assert sorted(path.name for path in (project.path / "data").iterdir()) == [f"{app}.db"]
