"""Test harness: real servers started by the suite itself, and generated projects.

* ``pg_server`` starts one throwaway PostgreSQL for the whole suite with the
  plugin's own server code (set ``ALCHEMY_TEST_PG_URL`` to use a running server
  instead). Without PostgreSQL binaries a developer's run skips those tests with
  the reason; under ``CI`` any skip fails the run (the no-skip gate below).
* ``project`` writes a small application (models with a foreign-key cycle, an
  ini file) into pytester's directory and runs pytest on it in a subprocess,
  the way users meet the plugin. Results are checked out of band through
  ``pg_admin`` / the SQLite file.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
import sqlalchemy.dialects.postgresql
import sqlalchemy.dialects.sqlite
from sqlalchemy.engine import URL, Engine, make_url

import pytest_alchemy.aio
import pytest_alchemy.fixtures
import pytest_alchemy.runtime
from pytest_alchemy import errors, servers

PRELOADED = (
    psycopg,
    sqlalchemy.dialects.postgresql,
    sqlalchemy.dialects.sqlite,
    pytest_alchemy.aio,
    pytest_alchemy.fixtures,
    pytest_alchemy.runtime,
)
"""Imported before any test: pytester forgets modules first imported during a test, and
a second import of a dialect or driver duplicates its classes (and warns)."""

pytest_plugins = ["pytester"]

BACKENDS = ("sqlite", "postgresql")

MODELS = '''
from __future__ import annotations

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class Vendor(Base):
    """Vendors and applications reference each other: a foreign-key cycle."""

    __tablename__ = "vendors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), default="")
    featured_id: Mapped[int | None] = mapped_column(ForeignKey("applications.id"))


class Application(Base):
    __tablename__ = "applications"
    id: Mapped[int] = mapped_column(primary_key=True)
    vendor_id: Mapped[int | None] = mapped_column(ForeignKey("vendors.id"))
'''

INI = """
[pytest]
alchemy_metadata = models:Base
pythonpath = .
asyncio_default_fixture_loop_scope = function
asyncio_default_test_loop_scope = function
{extra}
"""


# -- the no-skip gate --------------------------------------------------------------


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI, a skipped test means a backend was missing: fail the run loudly."""
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        if reporter is not None:
            reporter.write_line(
                f"no-skip gate: {len(skipped)} test(s) skipped under CI; every backend must be "
                "available in CI (see the skip reasons above).",
                red=True,
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# -- servers ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[URL]:
    """The admin URL (maintenance database, psycopg) of a PostgreSQL for the whole suite."""
    given = os.environ.get("ALCHEMY_TEST_PG_URL")
    if given:
        yield make_url(given)
        return
    try:
        server = servers.start_server("postgresql")
    except errors.ServerError as error:
        pytest.skip(f"PostgreSQL is not available: {error}")
    try:
        yield server.url.set(drivername="postgresql+psycopg")
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_admin(pg_server: URL) -> Iterator[Engine]:
    engine = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


def pg_databases(admin: Engine) -> set[str]:
    with admin.connect() as connection:
        return set(connection.exec_driver_sql("SELECT datname FROM pg_database").scalars())


# -- generated projects ---------------------------------------------------------------


@dataclass
class Project:
    """A generated project in pytester's directory, runnable against one backend."""

    pytester: pytest.Pytester
    backend: str
    admin: Engine | None = None
    server_url: URL | None = None
    app_db: str = "app"
    env: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return Path(self.pytester.path)

    @property
    def url(self) -> str:
        """The configured URL (the app database; the plugin derives the test database)."""
        if self.backend == "sqlite":
            return f"sqlite:///{self.path / 'data' / (self.app_db + '.db')}"
        assert self.server_url is not None
        return self.server_url.set(database=self.app_db).render_as_string(hide_password=False)

    def url_with(self, database: str) -> URL:
        if self.backend == "sqlite":
            return make_url(f"sqlite:///{self.path / 'data' / (database + '.db')}")
        assert self.server_url is not None
        return self.server_url.set(database=database)

    @property
    def test_name(self) -> str:
        """The test database the plugin derives from the app database."""
        return f"test_{self.app_db}"

    def test_db_path(self, name: str | None = None) -> Path:
        return self.path / "data" / f"{name or self.test_name}.db"

    def ini(self, extra: str = "") -> None:
        self.pytester.makefile(".ini", pytest=INI.format(extra=textwrap.dedent(extra)))

    def write(self, name: str, source: str) -> Path:
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
        return path

    def tests(self, source: str, name: str = "test_app.py") -> Path:
        return self.write(name, source)

    def run(self, *args: str, url: bool = True, timeout: float = 180) -> pytest.RunResult:
        """Run pytest in a subprocess on the project (with ``--alchemy-url`` unless told not to)."""
        argv = list(args)
        if url:
            argv = ["--alchemy-url", self.url, *argv]
        return self.pytester.runpytest_subprocess(*argv, "-p", "no:cacheprovider", timeout=timeout)

    def exists(self, name: str | None = None) -> bool:
        """Whether the test database ``name`` exists (checked out of band)."""
        name = name or self.test_name
        if self.backend == "sqlite":
            return self.test_db_path(name).exists()
        assert self.admin is not None
        return name in pg_databases(self.admin)

    def connect(self, name: str | None = None) -> Engine:
        """An engine on database ``name`` of this project's server, for out-of-band checks."""
        name = name or self.test_name
        if self.backend == "sqlite":
            return sa.create_engine(
                f"sqlite:///{self.test_db_path(name)}", poolclass=sa.pool.NullPool
            )
        assert self.server_url is not None
        return sa.create_engine(self.server_url.set(database=name), poolclass=sa.pool.NullPool)

    def sql(self, statement: str, name: str | None = None, **params: Any) -> list[Any]:
        engine = self.connect(name)
        try:
            with engine.begin() as connection:
                result = connection.execute(sa.text(statement), params)
                return list(result.all()) if result.returns_rows else []
        finally:
            engine.dispose()

    def create_app_database(self, name: str | None = None, rows: int = 3) -> None:
        """Create the 'real' app database with rows in it, out of band."""
        name = name or self.app_db
        if self.backend == "sqlite":
            (self.path / "data").mkdir(exist_ok=True)
            engine = sa.create_engine(f"sqlite:///{self.path / 'data' / (name + '.db')}")
        else:
            assert self.admin is not None
            with self.admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
            assert self.server_url is not None
            engine = sa.create_engine(self.server_url.set(database=name))
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
            for index in range(rows):
                connection.exec_driver_sql(
                    f"INSERT INTO users (id, name) VALUES ({index + 1}, 'real {index}')"
                )
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def project(
    pytester: pytest.Pytester, backend: str, monkeypatch: pytest.MonkeyPatch, request: Any
) -> Iterator[Project]:
    """A generated project with the standard models, for the parametrized backend."""
    for name in list(os.environ):
        if name.startswith("ALCHEMY_"):
            monkeypatch.delenv(name)
    created = Project(pytester, backend)
    if backend == "postgresql":
        created.server_url = request.getfixturevalue("pg_server")
        created.admin = request.getfixturevalue("pg_admin")
        # Each test gets its own app database name, so tests never share databases.
        created.app_db = f"app_{abs(hash(request.node.nodeid)) % 10**8}"
    created.write("models.py", MODELS)
    created.ini()
    yield created
    if backend == "postgresql" and created.admin is not None:
        with created.admin.connect() as connection:
            names = connection.execute(
                sa.text("SELECT datname FROM pg_database WHERE strpos(datname, :n) > 0"),
                {"n": created.app_db},
            ).scalars()
            for name in list(names):
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
