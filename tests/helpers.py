"""Shared code of the test suite: the generated-project harness, its models and ini,
backend parameters, and out-of-band helpers. Fixtures and hooks live in ``conftest.py``.

* :class:`Project` writes a small application (models with a foreign-key cycle, an ini
  file) into pytester's directory and runs pytest on it in a subprocess, the way users
  meet the plugin; results are checked out of band (``pg_admin``, the SQLite file).
* :data:`SQLITE`, :data:`POSTGRESQL` and :data:`BACKEND_PARAMS` parametrize the
  ``backend`` fixture; the PostgreSQL one carries the ``postgresql`` mark, so
  ``-m "not postgresql"`` deselects every test that needs a server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from pytest_alchemy import processes

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
"""The example apps (``examples/todo_app``, ``examples/async_app``)."""

SQLITE = pytest.param("sqlite", id="sqlite")
POSTGRESQL = pytest.param("postgresql", marks=pytest.mark.postgresql, id="postgresql")
BACKEND_PARAMS = (SQLITE, POSTGRESQL)
"""The ``backend`` fixture's parameters: every ``project`` test runs on both."""

sqlite_only = pytest.mark.parametrize("backend", [SQLITE])
"""Run a ``project`` test on SQLite only (a usage error, a message: no server needed)."""
postgresql_only = pytest.mark.parametrize("backend", [POSTGRESQL])
"""Run a ``project`` test on PostgreSQL only (marked ``postgresql``)."""


def backend_marks(backend: str) -> list[pytest.MarkDecorator]:
    """The marks of a ``pytest.param`` whose backend is ``backend``."""
    return [pytest.mark.postgresql] if backend == "postgresql" else []


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


def failure_reports(output: str) -> str:
    """A run's output down to its failure and error reports: under CI the short test
    summary below them repeats each message uncut, so counting there counts twice."""
    return output.split("short test summary info", 1)[0]


def scrub_alchemy_env(monkeypatch: pytest.MonkeyPatch, *also: str) -> None:
    """Remove every ``ALCHEMY_*`` variable (and the names in ``also``) for this test.

    Generated projects must see only the settings the test gives them, never the
    developer's or CI's environment.
    """
    for name in list(os.environ):
        if name.startswith("ALCHEMY_") or name in also:
            monkeypatch.delenv(name)


def server_scalar(url: URL, sql: str) -> object:
    """One value from a throwaway server, out of band (psycopg, no pool)."""
    engine = sa.create_engine(url.set(drivername="postgresql+psycopg"), poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(sql)).scalar()
    finally:
        engine.dispose()


def wait_stopped(pid: int, timeout: float = 10.0) -> bool:
    """Whether the process ``pid`` is gone within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while processes.running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def pg_databases(admin: Engine) -> set[str]:
    with admin.connect() as connection:
        return set(connection.exec_driver_sql("SELECT datname FROM pg_database").scalars())


def drop_databases(admin: Engine, names: Iterable[str]) -> None:
    """Drop the PostgreSQL databases ``names`` if they exist, even with sessions still on them."""
    with admin.connect() as connection:
        for name in names:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


MIN_EXAMPLE_TESTS = 20
"""Every example app's own suite has at least this many tests."""


def run_example(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run the example app copied into pytester's directory, in a subprocess; every one
    of its (at least :data:`MIN_EXAMPLE_TESTS`) tests must pass."""
    result = pytester.runpytest_subprocess(*args, timeout=300)
    outcomes = result.parseoutcomes()
    assert set(outcomes) == {"passed"}, result.stdout.str()
    assert outcomes["passed"] >= MIN_EXAMPLE_TESTS, result.stdout.str()
    assert result.ret == pytest.ExitCode.OK
    return result


@contextmanager
def example_app_database(admin: Engine, prefix: str) -> Iterator[str]:
    """A name for an example's app database on the suite's PostgreSQL server, unique to
    this test; afterwards every database named after it (the app's, the test database,
    its kept templates) is dropped."""
    name = f"{prefix}_{os.getpid()}_{time.monotonic_ns() % 10**6}"
    try:
        yield name
    finally:
        drop_databases(admin, [database for database in pg_databases(admin) if name in database])


def assert_embedded_database_dropped(example: Path) -> None:
    """The example's embedded SQLite test database is gone from pytest's cache directory;
    only the schema's template (and its build lock) stays, for the next run to copy."""
    folder = example / ".pytest_cache" / "d" / "alchemy"
    assert folder.is_dir(), "the embedded database lives in pytest's cache directory"
    left = sorted(path.name for path in folder.iterdir())
    assert [name for name in left if "_tpl_" not in name and not name.endswith(".lock")] == [], (
        "the test database is dropped"
    )
    assert any(name.startswith("test_alchemy_tpl_") for name in left)


def copy_example(source: Path, destination: Path) -> Path:
    """Copy the example app ``source`` into ``destination``, without caches or databases."""
    shutil.copytree(
        source,
        destination,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns(".pytest_cache", "__pycache__", "*.db"),
    )
    return destination


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

    def seed(self, *statements: str) -> str:
        """Write ``seed.py``, which runs ``statements`` after the schema is built; return
        the ini line that makes it the project's seeding (``alchemy_seed``)."""
        body = "".join(f"    connection.exec_driver_sql({s!r})\n" for s in statements)
        self.write("seed.py", f"def init_db(connection):\n{body or '    pass'}\n")
        return "alchemy_seed = seed:init_db"

    def tests(self, source: str, name: str = "test_app.py") -> Path:
        return self.write(name, source)

    def run(self, *args: str, url: bool = True, timeout: float = 180) -> pytest.RunResult:
        """Run pytest in a subprocess on the project (with ``--alchemy-url`` unless told not to)."""
        argv = list(args)
        if url:
            argv = ["--alchemy-url", self.url, *argv]
        return self.pytester.runpytest_subprocess(*argv, "-p", "no:cacheprovider", timeout=timeout)

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        """Start pytest on the project in the background (with ``--alchemy-url``), with
        ``env`` added to the environment; its output is read from ``stdout``."""
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
        return subprocess.Popen(
            [*command, "--alchemy-url", self.url, *args],
            cwd=self.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **env},
        )

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
            drop_databases(self.admin, [name])
            with self.admin.connect() as connection:
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
