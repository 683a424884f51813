"""Fixtures and hooks of the test suite: real servers started by the suite itself,
generated projects, the ``postgresql`` mark check and the no-skip gate.

* ``pg_server`` starts one throwaway PostgreSQL for the whole suite with the
  plugin's own server code (set ``ALCHEMY_TEST_PG_URL`` to use a running server
  instead). Without PostgreSQL binaries a developer's run skips those tests with
  the reason; under ``CI`` any skip fails the run (the no-skip gate below).
* ``project`` is a :class:`~tests.helpers.Project` for the parametrized backend: a
  small application written into pytester's directory and run in a subprocess.
* Every test that needs PostgreSQL carries ``@pytest.mark.postgresql``, so
  ``-m "not postgresql"`` runs without a server; collection fails when one does not.

The shared code (the ``Project`` harness, models, backend parameters, out-of-band
helpers) lives in ``tests/helpers.py``.
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Callable, Iterator
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

from .helpers import (
    BACKEND_PARAMS,
    MODELS,
    Project,
    copy_example,
    drop_databases,
    pg_databases,
    scrub_alchemy_env,
)

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

# -- interrupting children ------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    """Give the processes the tests start SIGINT's default action back.

    Some tests interrupt a child (a pytest run, an interpreter owning a server) with
    SIGINT and expect it to stop like on Ctrl-C. A run started in the background
    (``nohup ./scripts/test &``) inherits SIGINT *ignored*, and so would every child:
    the interrupt would be lost and the child would outlive its test, and the run,
    writing its coverage data while ``coverage combine`` reads it. A handler of our
    own is reset to the default action in each child that executes a new program.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# -- the no-skip gate --------------------------------------------------------------


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI, a skipped test means a backend was missing: fail the run loudly.

    So the CI machine must provide everything every test needs, which is a contract
    on its environment (``CONTRIBUTING.md`` lists it):

    * the PostgreSQL server programs (or ``ALCHEMY_TEST_PG_URL``), for the
      ``postgresql`` tests;
    * running as root: ``test_servers.py`` checks that reaping leaves alone what only
      root may stop or delete, which needs root (``skipif(os.geteuid() != 0)``);
    * pg8000 *not* installed: ``test_options.py`` checks the message for a driver that
      is missing, with pg8000 as that driver (``skipif`` pg8000 is importable).
    """
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


# -- what needs PostgreSQL carries the mark -----------------------------------------------

POSTGRESQL_FIXTURES = frozenset({"pg_server", "pg_admin", "own_server"})
"""Fixtures that reach a PostgreSQL server: a test using one needs the ``postgresql`` mark."""


def _uses_postgresql(item: pytest.Item) -> bool:
    if POSTGRESQL_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and callspec.params.get("backend") == "postgresql"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse any PostgreSQL test without the mark.

    Runs before ``-m`` selects, so ``-m "not postgresql"`` leaves out exactly the tests
    that need a server.
    """
    unmarked = [
        item.nodeid
        for item in items
        if _uses_postgresql(item) and item.get_closest_marker("postgresql") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            f"{len(unmarked)} test(s) use PostgreSQL (the pg_server, pg_admin or own_server "
            "fixture, or the backend 'postgresql') without @pytest.mark.postgresql, so "
            "-m 'not postgresql' would still run them. Mark them (helpers.POSTGRESQL, "
            "helpers.postgresql_only):\n  " + "\n  ".join(unmarked)
        )


@pytest.fixture(autouse=True)
def _no_postgresql_server_unless_marked(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test that starts a PostgreSQL server itself fails unless it carries the mark."""
    if request.node.get_closest_marker("postgresql") is not None:
        return
    start: Callable[..., servers.ThrowawayServer] = servers.start_server

    def start_if_marked(kind: str, *args: Any, **kwargs: Any) -> servers.ThrowawayServer:
        if kind == "postgresql":
            pytest.fail(
                f"{request.node.nodeid} starts a PostgreSQL server but is not marked "
                "@pytest.mark.postgresql: mark it, so -m 'not postgresql' leaves it out.",
                pytrace=False,
            )
        return start(kind, *args, **kwargs)

    monkeypatch.setattr(servers, "start_server", start_if_marked)


@pytest.fixture(autouse=True)
def _not_an_xdist_worker_for_children(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``pytest -n``, the runs a test starts are not workers of this suite's run.

    xdist tells a worker who it is through ``PYTEST_XDIST_*`` variables, which the
    processes a test starts would inherit: a generated project would then name its
    database after a worker it is not. And the throwaway servers those processes start
    live under the temporary directory, where every run reaps the servers of dead runs:
    each worker's children get a temporary directory of their own, so that a test on
    one worker never reaps the server another worker's test left on purpose.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    for name in list(os.environ):
        if name.startswith("PYTEST_XDIST_"):
            monkeypatch.delenv(name)
    if worker:
        # Short: unix socket paths under it must stay within 107 bytes.
        own = Path(tempfile.gettempdir()) / f"pa-{worker}"
        own.mkdir(exist_ok=True)
        monkeypatch.setenv("TMPDIR", str(own))
        monkeypatch.setattr(tempfile, "tempdir", str(own))  # this process agrees with them


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


# -- generated projects ---------------------------------------------------------------


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def project(
    pytester: pytest.Pytester, backend: str, monkeypatch: pytest.MonkeyPatch, request: Any
) -> Iterator[Project]:
    """A generated project with the standard models, for the parametrized backend."""
    scrub_alchemy_env(monkeypatch)
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
        names = [name for name in pg_databases(created.admin) if created.app_db in name]
        drop_databases(created.admin, names)


@pytest.fixture
def example(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Path:
    """A fresh copy of the module's example app (its ``EXAMPLE`` directory) as pytester's
    project, with no database settings from the environment."""
    scrub_alchemy_env(monkeypatch, "DATABASE_URL")
    return copy_example(request.module.EXAMPLE, Path(pytester.path))
