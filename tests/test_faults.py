"""Faults: a server restarted or connections cut mid-run, a run killed or interrupted.

Promises checked here, each by running pytest on a generated project and looking
at the server out of band afterwards:

* the server restarting (or the test's connection being cut) makes the current test
  error clearly, the next tests get fresh connections, the run ends, nothing hangs;
* a run killed with SIGKILL while the schema is built, or while it tears down,
  leaves a database that the next run reaps: afterwards no test database is left;
* Ctrl-C during a long schema build drops the half-built database;
* a SQLite default on a full disk is a clear error, not a traceback;
* ``--alchemy-reap`` reaps on demand and says what it reaped.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from pytest_alchemy import servers

from .helpers import MODELS, Project, pg_databases, postgresql_only, sqlite_only

ROWS_TESTS = """
from sqlalchemy import func, select, text
from models import User


def test_before(alchemy_session):
    alchemy_session.add(User(name="before"))
    alchemy_session.commit()


def test_cut(alchemy_session):
    alchemy_session.add(User(name="during"))
    alchemy_session.commit()
    CUT()
    alchemy_session.execute(text("SELECT 1"))


def test_after(alchemy_session):
    alchemy_session.add(User(name="after"))
    alchemy_session.commit()
    assert alchemy_session.scalar(select(func.count()).select_from(User)) == 1


def test_after_again(alchemy_connection):
    assert alchemy_connection.scalar(select(func.count()).select_from(User)) == 0
"""


@pytest.fixture(scope="module")
def own_server() -> Iterator[servers.ThrowawayServer]:
    """A server only these tests restart, so the rest of the suite is not disturbed."""
    try:
        server = servers.start_server("postgresql")
    except servers.errors.ServerError as error:
        pytest.skip(f"PostgreSQL is not available: {error}")
    try:
        yield server
    finally:
        server.stop()


def _server_user() -> tuple[int, int] | None:
    """uid/gid to run server programs as (PostgreSQL refuses root)."""
    if os.getuid() != 0:
        return None
    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid


@pytest.mark.postgresql
@pytest.mark.parametrize("fault", ["restart", "terminate"])
def test_a_restart_or_cut_connection_errors_the_test_and_the_run_goes_on(
    pytester: pytest.Pytester, own_server: servers.ThrowawayServer, fault: str
) -> None:
    project = Project(pytester, "postgresql", server_url=own_server.url)
    project.app_db = f"faults_{fault}"
    project.write("models.py", MODELS)
    project.ini()
    assert isinstance(own_server, servers.PostgreSQLServer)
    if fault == "restart":
        user = _server_user()
        cut = textwrap.dedent(
            f"""
            import subprocess

            def CUT():
                # The new postmaster keeps inherited pipes open: log to the file instead.
                subprocess.run(
                    [{str(own_server.binaries.pg_ctl)!r}, "restart", "-D",
                     {str(own_server.data_directory)!r}, "-m", "fast", "-w", "-t", "60",
                     "-l", {str(own_server.log_file)!r}],
                    check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, timeout=90,
                    user={user[0] if user else None}, group={user[1] if user else None},
                )
            """
        )
    else:
        admin = own_server.url.set(drivername="postgresql+psycopg")
        cut = textwrap.dedent(
            f"""
            import sqlalchemy as sa

            def CUT():
                engine = sa.create_engine({admin.render_as_string(hide_password=False)!r},
                                          isolation_level="AUTOCOMMIT")
                with engine.connect() as connection:
                    connection.exec_driver_sql(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = 'test_faults_{fault}'"
                    )
                engine.dispose()
            """
        )
    project.tests(cut + ROWS_TESTS)
    started = time.monotonic()
    result = project.run("-p", "no:randomly", timeout=240)
    assert time.monotonic() - started < 180, "the run must not hang"
    # Exactly one clear failure: the test whose connection died, in the driver's words.
    # Its teardown adds no second error, and the next tests run on fresh connections.
    result.assert_outcomes(passed=3, failed=1)
    text = result.stdout.str()
    assert "FAILED test_app.py::test_cut - sqlalchemy.exc.OperationalError" in text
    assert "terminating connection" in text or "server closed the connection" in text
    admin = sa.create_engine(own_server.url.set(drivername="postgresql+psycopg"))
    try:
        assert f"test_faults_{fault}" not in pg_databases(admin)
    finally:
        admin.dispose()


SLOW_BUILD_INI = """
alchemy_init_sql =
    SELECT pg_sleep(30)
"""


def _wait_for_database(project: Project, name: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        if project.exists(name):
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} never appeared")


def _databases_of(project: Project) -> set[str]:
    """The project's test database and its templates on the server."""
    assert project.admin is not None
    return {name for name in pg_databases(project.admin) if name.startswith(project.test_name)}


def _wait_for_any(project: Project, deadline: float) -> None:
    while time.monotonic() < deadline:
        if _databases_of(project):
            return
        time.sleep(0.1)
    raise AssertionError(f"neither {project.test_name} nor a template of it ever appeared")


@postgresql_only
@pytest.mark.parametrize("how", ["sigkill", "sigint"])
def test_a_run_stopped_during_the_schema_build_leaves_nothing_behind(
    project: Project, how: str
) -> None:
    project.ini(SLOW_BUILD_INI)
    project.tests("def test_db(alchemy_connection):\n    pass\n")
    process = project.start("-q")
    try:
        # The schema is built into the template (test_app_tpl_...), then copied.
        _wait_for_any(project, time.monotonic() + 60)
        time.sleep(0.5)  # inside pg_sleep now
        process.send_signal(signal.SIGKILL if how == "sigkill" else signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    if how == "sigint":
        assert process.returncode == pytest.ExitCode.INTERRUPTED, output
        assert not _databases_of(project), "Ctrl-C during the build drops the half-built one"
        return
    assert process.returncode == -signal.SIGKILL
    assert _databases_of(project), "a killed run cannot clean up after itself"
    # The next run (fast build this time) reaps the dead run's half-built template and
    # builds its own, then drops its test database.
    project.ini()
    result = project.run("-q")
    result.assert_outcomes(passed=1)
    assert not project.exists()
    assert len(_databases_of(project)) == 1, "only the new, complete template stays"


KILLED_IN_TEARDOWN = """
import os
import signal

import pytest


@pytest.fixture
def dies_in_teardown():
    yield
    os.kill(os.getpid(), signal.SIGKILL)


def test_db(dies_in_teardown, alchemy_session):
    pass
"""


def test_a_run_killed_during_teardown_is_reaped_by_the_next_run(project: Project) -> None:
    project.tests(KILLED_IN_TEARDOWN)
    killed = project.run("-q")
    assert killed.ret == -signal.SIGKILL
    assert project.exists()
    project.tests("def test_db(alchemy_connection):\n    pass\n")
    result = project.run("-q")
    result.assert_outcomes(passed=1)
    assert not project.exists()


def test_reap_on_demand_says_what_it_reaped(project: Project) -> None:
    project.tests(KILLED_IN_TEARDOWN)
    assert project.run("-q").ret == -signal.SIGKILL
    assert project.exists()
    project.tests("def test_plain():\n    pass\n")
    result = project.run("--alchemy-reap", "-q")
    result.assert_outcomes(passed=1)
    # Leftovers of other dead runs on this machine may be listed too.
    reaped = [line for line in result.stdout.lines if line.startswith("alchemy: reaped ")]
    assert len(reaped) == 1
    assert reaped[0].endswith(f"database {project.test_name}") or (
        f"database {project.test_name}," in reaped[0]
    )
    assert not project.exists()
    again = project.run("--alchemy-reap", "-q")
    assert "alchemy: reaped nothing" in again.stdout.str()


@sqlite_only
def test_a_full_disk_for_the_sqlite_default_is_a_clear_error(project: Project) -> None:
    project.tests("def test_db(alchemy_connection):\n    pass\n")
    # A file size limit makes every write past it fail like a full disk (SQLITE_FULL).
    # It holds only while pytest runs, and the output goes to a pipe (which no file size
    # limit cuts): what the interpreter writes at exit, such as coverage's data file when
    # the suite measures its children, must not be cut at 1 KiB too.
    runner = textwrap.dedent(
        """
        import resource, signal, sys
        import pytest
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, hard))
        try:
            status = pytest.main(["-p", "no:cacheprovider", "-o", "cache_dir=/tmp", "-q"])
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        sys.exit(status)
        """
    )
    process = project.pytester.popen(
        [sys.executable, "-c", runner],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = process.communicate(timeout=120)
    text = output.decode()
    assert "pytest-alchemy: cannot create the SQLite test database" in text, text
    # What SQLite said, then what to do about it.
    assert "disk I/O error" in text or "database or disk is full" in text, text
    assert "be writable and have free space" in text
    assert "Traceback" not in text


CUT_AFTER_THE_LAST_STATEMENT = """
import time

import sqlalchemy as sa
from sqlalchemy import func, select

from models import User


def test_cut_quietly(alchemy_connection, alchemy_database):
    alchemy_connection.execute(sa.insert(User).values(name="lost with the connection"))
    pid = alchemy_connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    other = sa.create_engine(alchemy_database.url, poolclass=sa.pool.NullPool)
    with other.connect() as connection:
        connection.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
        alive = f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"
        while connection.exec_driver_sql(alive).scalar():
            time.sleep(0.01)
    other.dispose()


def test_next(alchemy_session):
    assert alchemy_session.scalar(select(func.count()).select_from(User)) == 0
    alchemy_session.add(User(name="next"))
    alchemy_session.commit()
"""


@postgresql_only
def test_a_connection_cut_after_the_tests_last_statement_is_replaced_quietly(
    project: Project,
) -> None:
    """The test saw nothing go wrong, so it passes; the server rolled its work back with
    the connection, and the next test gets a fresh one."""
    project.tests(CUT_AFTER_THE_LAST_STATEMENT)
    result = project.run("-p", "no:randomly", "--alchemy-keep-db")
    result.assert_outcomes(passed=2)
    assert "Traceback" not in result.stdout.str()
    assert project.sql("SELECT count(*) FROM users") == [(0,)]


CLOSES_ITS_DRIVER_CONNECTION = """
import sqlalchemy as sa
from sqlalchemy import func, select

from models import User


def test_closes_the_driver_connection(alchemy_connection):
    alchemy_connection.execute(sa.insert(User).values(name="lost with the connection"))
    alchemy_connection.connection.dbapi_connection.close()


def test_next(alchemy_session):
    assert alchemy_session.scalar(select(func.count()).select_from(User)) == 0
    alchemy_session.add(User(name="next"))
    alchemy_session.commit()
"""


def test_a_test_that_closes_its_driver_connection_gets_a_fresh_one_next(
    project: Project,
) -> None:
    """Closing the connection under SQLAlchemy's feet ended the transaction with it: the
    test passes, nothing of it is left, and the plugin shows no traceback of its own."""
    project.tests(CLOSES_ITS_DRIVER_CONNECTION)
    result = project.run("-p", "no:randomly", "--alchemy-keep-db")
    result.assert_outcomes(passed=2)
    assert "Traceback" not in result.stdout.str()
    assert "pytest_alchemy/" not in result.stdout.str()
    assert project.sql("SELECT count(*) FROM users") == [(0,)]


LEAVES_A_COPY_OPEN = """
from sqlalchemy import func, select

from models import User


def test_leaves_a_copy_open(alchemy_connection):
    cursor = alchemy_connection.connection.driver_connection.cursor()
    copy = cursor.copy("COPY users (name) FROM STDIN").__enter__()
    copy.write_row(("sent, never finished",))


def test_next(alchemy_session):
    assert alchemy_session.scalar(select(func.count()).select_from(User)) == 0
    alchemy_session.add(User(name="next"))
    alchemy_session.commit()
"""


@postgresql_only
def test_a_copy_left_in_progress_is_abandoned_with_its_transaction(project: Project) -> None:
    """A test that never finishes a COPY (psycopg 3) leaves its connection inside the
    command: the teardown must neither hang on it nor let its rows in."""
    project.tests(LEAVES_A_COPY_OPEN)
    result = project.run("-p", "no:randomly", "--alchemy-keep-db", timeout=120)
    result.assert_outcomes(passed=2)
    assert project.sql("SELECT count(*) FROM users") == [(0,)]


@contextmanager
def silent_server() -> Iterator[int]:
    """A TCP port on loopback that accepts connections and never answers (closed after)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()


@sqlite_only
@pytest.mark.parametrize("where", ["setting", "url"])
def test_a_server_that_never_answers_fails_within_the_connect_timeout(
    project: Project, where: str
) -> None:
    project.tests("def test_db(alchemy_connection):\n    pass\n")
    with silent_server() as port:
        url = f"postgresql+psycopg://nobody:secret@127.0.0.1:{port}/app"
        args = ["--alchemy-url", url, "-o", "alchemy_connect_timeout=1"]
        if where == "url":
            # An explicit connect_timeout in the URL wins over the setting.
            args = [
                "--alchemy-url",
                url + "?connect_timeout=1",
                "-o",
                "alchemy_connect_timeout=300",
            ]
        started = time.monotonic()
        result = project.run(*args, url=False, timeout=60)
        elapsed = time.monotonic() - started
    result.assert_outcomes(errors=1)
    text = result.stdout.str()
    assert (
        f"cannot reach the PostgreSQL server of postgresql+psycopg://nobody:***@127.0.0.1:{port}/app"
        in text
    )
    assert "timeout" in text
    assert "secret" not in text
    assert elapsed < 30, f"the run waited {elapsed:.0f} s for a server that never answers"
