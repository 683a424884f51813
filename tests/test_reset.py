"""No session state crosses tests on a pooled connection.

For each kind of session state a test can leave behind, per backend and per
strategy it applies to, a generated project runs two tests on ONE pooled
connection (each test checks it got the same server session, so the check is
real): the first leaves the state, the second must not see it. Without the
plugin's reset every one of these fails. The driver's own prepared statements
survive the reset (its statement cache stays valid), and settings made by the
project's own connect events are put back after a ``RESET ALL``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest

from .helpers import Project, backend_marks, postgresql_only

SAME_CONNECTION = """
import json
from pathlib import Path

SEEN = Path("sessions.json")


def remember(connection):
    if connection.dialect.name == "postgresql":
        session = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    else:
        session = id(connection.connection.dbapi_connection)
    seen = json.loads(SEEN.read_text()) if SEEN.exists() else []
    seen.append(session)
    SEEN.write_text(json.dumps(seen))
"""


@dataclass(frozen=True)
class Leak:
    name: str
    backend: str
    strategies: tuple[str, ...]
    leave: str
    """Python statements run on ``connection`` in the first test."""
    check: str
    """Python statements run on ``connection`` in the second test (assertions)."""


BOTH = ("savepoint", "none")
COMMITTING = ("none",)

LEAKS = [
    Leak(
        "advisory_lock",
        "postgresql",
        BOTH,
        'connection.exec_driver_sql("SELECT pg_advisory_lock(4242)")',
        'assert connection.exec_driver_sql("SELECT count(*) FROM pg_locks '
        "WHERE locktype = 'advisory' AND pid = pg_backend_pid()\").scalar() == 0",
    ),
    Leak(
        "prepared_statement",
        "postgresql",
        BOTH,
        'connection.exec_driver_sql("PREPARE leaked AS SELECT 1")',
        'assert connection.exec_driver_sql("SELECT count(*) FROM pg_prepared_statements '
        "WHERE from_sql AND left(name, 7) <> 'alchemy'\").scalar() == 0\n"
        'connection.exec_driver_sql("PREPARE leaked AS SELECT 1")',
    ),
    Leak(
        "setting",
        "postgresql",
        COMMITTING,
        'connection.exec_driver_sql("SET statement_timeout = 1234")\n'
        "connection.exec_driver_sql(\"SET application_name = 'leaked'\")\n"
        "connection.commit()",
        'assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "0"\n'
        'assert connection.exec_driver_sql("SHOW application_name").scalar() != "leaked"\n'
        "# the plugin's own lock timeout travels in the startup packet and survives\n"
        'assert connection.exec_driver_sql("SHOW lock_timeout").scalar() == "7s"',
    ),
    Leak(
        "temp_table",
        "postgresql",
        COMMITTING,
        'connection.exec_driver_sql("CREATE TEMP TABLE leaked (x int)")\nconnection.commit()',
        'assert connection.exec_driver_sql("SELECT count(*) FROM pg_class '
        "WHERE relpersistence = 't' AND relnamespace = pg_my_temp_schema()\").scalar() == 0",
    ),
    Leak(
        "listen",
        "postgresql",
        COMMITTING,
        'connection.exec_driver_sql("LISTEN leaked")\nconnection.commit()',
        'assert connection.exec_driver_sql("SELECT count(*) FROM pg_listening_channels()")'
        ".scalar() == 0",
    ),
    Leak(
        "held_cursor",
        "postgresql",
        COMMITTING,
        'connection.exec_driver_sql("DECLARE leaked CURSOR WITH HOLD FOR SELECT 1")\n'
        "connection.commit()",
        'assert connection.exec_driver_sql("SELECT count(*) FROM pg_cursors").scalar() == 0',
    ),
    Leak(
        "query_only",
        "sqlite",
        BOTH,
        'connection.exec_driver_sql("PRAGMA query_only = 1")',
        'assert connection.exec_driver_sql("PRAGMA query_only").scalar() == 0\n'
        "connection.exec_driver_sql(\"INSERT INTO users (name) VALUES ('writable')\")",
    ),
    Leak(
        "recursive_triggers",
        "sqlite",
        BOTH,
        'connection.exec_driver_sql("PRAGMA recursive_triggers = 1")',
        'assert connection.exec_driver_sql("PRAGMA recursive_triggers").scalar() == 0',
    ),
    Leak(
        "attached_database",
        "sqlite",
        COMMITTING,
        "# ATTACH cannot run inside a transaction: on the driver's connection, before any\n"
        "connection.connection.dbapi_connection.execute(\"ATTACH DATABASE ':memory:' AS leaked\")",
        "names = [row[1] for row in connection.exec_driver_sql('PRAGMA database_list')]\n"
        'assert "leaked" not in names, names',
    ),
    Leak(
        "temp_table",
        "sqlite",
        COMMITTING,
        'connection.exec_driver_sql("CREATE TEMP TABLE leaked (x int)")\nconnection.commit()',
        'assert connection.exec_driver_sql("SELECT count(*) FROM sqlite_temp_master")'
        ".scalar() == 0",
    ),
]

CASES = [
    pytest.param(
        leak.backend,
        strategy,
        leak,
        id=f"{leak.backend}-{strategy}-{leak.name}",
        marks=backend_marks(leak.backend),
    )
    for leak in LEAKS
    for strategy in leak.strategies
]


def resets(result: pytest.RunResult) -> int:
    """How many connection resets the plugin's terminal summary reports."""
    found = re.search(r"(\d+) connection resets", result.stdout.str())
    assert found is not None, result.stdout.str()
    return int(found.group(1))


def _indent(code: str) -> str:
    return "\n".join("    " + line for line in code.splitlines())


@pytest.mark.parametrize(("backend", "strategy", "leak"), CASES)
def test_session_state_does_not_reach_the_next_test(
    project: Project, strategy: str, leak: Leak
) -> None:
    project.ini(f"alchemy_isolation = {strategy}\nalchemy_lock_timeout = 7")
    project.tests(
        SAME_CONNECTION
        + f"""

def test_leaves(alchemy_connection):
    connection = alchemy_connection
    remember(connection)
{_indent(leak.leave)}


def test_finds_nothing(alchemy_connection):
    connection = alchemy_connection
    remember(connection)
{_indent(leak.check)}
"""
    )
    result = project.run("-p", "no:randomly", "-o", "alchemy_leak_check=off")
    result.assert_outcomes(passed=2)
    sessions = json.loads((project.path / "sessions.json").read_text())
    assert len(sessions) == 2
    assert sessions[0] == sessions[1], "both tests must run on the same pooled connection"
    if leak.name != "advisory_lock":  # released by every check, not counted as a reset
        assert resets(result) >= 1


DEALLOCATES_EVERYTHING = """
def test_deallocates_everything(alchemy_connection):
    remember(alchemy_connection)
    alchemy_connection.exec_driver_sql("PREPARE mine AS SELECT 1")
    alchemy_connection.exec_driver_sql("DEALLOCATE ALL")


def test_after(alchemy_connection):
    remember(alchemy_connection)
    names = alchemy_connection.exec_driver_sql("SELECT name FROM pg_prepared_statements")
    assert [name for name in names.scalars() if not name.startswith("alchemy")] == []
"""


@postgresql_only
@pytest.mark.parametrize("strategy", BOTH)
def test_the_plugins_prepared_check_survives_deallocate_all(
    project: Project, strategy: str
) -> None:
    """The check after each test is a prepared statement of the session: a test that
    deallocates everything takes it along, and it is prepared again."""
    project.ini(f"alchemy_isolation = {strategy}")
    project.tests(SAME_CONNECTION + DEALLOCATES_EVERYTHING)
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(passed=2)
    sessions = json.loads((project.path / "sessions.json").read_text())
    assert sessions[0] == sessions[1], "both tests must run on the same pooled connection"
    assert "0 leaks" in result.stdout.str()


IDLE_TESTS_THEN_A_ROLLBACK = """
import pytest

PREPARED_AT = (
    "SELECT prepare_time::text FROM pg_prepared_statements WHERE left(name, 14) = 'alchemy_probe_'"
)
seen = []


def test_writes_first(alchemy_connection):
    alchemy_connection.exec_driver_sql("INSERT INTO users (name) VALUES ('first')")


@pytest.mark.parametrize("n", range(8))
def test_runs_no_statement(alchemy_connection, n):
    pass


def test_writes_and_rolls_back(alchemy_connection):
    seen.append(alchemy_connection.exec_driver_sql(PREPARED_AT).scalar())
    alchemy_connection.exec_driver_sql("INSERT INTO users (name) VALUES ('second')")


def test_after(alchemy_connection):
    seen.append(alchemy_connection.exec_driver_sql(PREPARED_AT).scalar())
    assert seen[0] is not None
    assert seen[0] == seen[1], "the plugin's check was deallocated and prepared again"
"""


@postgresql_only
def test_the_plugins_check_is_prepared_once_per_connection(project: Project) -> None:
    """Tests that run no statement are checked outside a transaction, with the same
    text each time. psycopg would prepare a statement it saw five times, and then
    deallocate every prepared statement of the session at the next rollback, the
    plugin's check among them; it neither counts nor prepares the plugin's own."""
    project.tests(IDLE_TESTS_THEN_A_ROLLBACK)
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(passed=11)


CONNECT_EVENT = """
import pytest
from sqlalchemy import event


@pytest.fixture(scope="session", autouse=True)
def app_search_path(alchemy_engine):
    # What an application's own connect event sets must survive the plugin's reset.
    @event.listens_for(alchemy_engine, "connect")
    def set_search_path(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("SET search_path = app_schema, public")
        cursor.close()
        dbapi_connection.commit()

    alchemy_engine.dispose()
"""


@postgresql_only
def test_settings_from_connect_events_are_put_back_after_a_reset(project: Project) -> None:
    project.ini("alchemy_isolation = none\nalchemy_init_sql = CREATE SCHEMA app_schema")
    project.write("conftest.py", CONNECT_EVENT)
    project.tests(
        SAME_CONNECTION
        + """

def test_changes_it(alchemy_connection):
    remember(alchemy_connection)
    assert alchemy_connection.exec_driver_sql("SHOW search_path").scalar() == (
        "app_schema, public"
    )
    alchemy_connection.exec_driver_sql("SET search_path = public")
    alchemy_connection.exec_driver_sql("SET work_mem = '7MB'")
    alchemy_connection.commit()


def test_sees_the_app_setting_again(alchemy_connection):
    remember(alchemy_connection)
    assert alchemy_connection.exec_driver_sql("SHOW search_path").scalar() == (
        "app_schema, public"
    )
    assert alchemy_connection.exec_driver_sql("SHOW work_mem").scalar() != "7MB"
"""
    )
    result = project.run("-p", "no:randomly", "-o", "alchemy_leak_check=off")
    result.assert_outcomes(passed=2)
    sessions = json.loads((project.path / "sessions.json").read_text())
    assert sessions[0] == sessions[1]


DRIVER_CACHE = """
import pytest
from sqlalchemy import text

pytestmark = pytest.mark.asyncio


async def _many(connection):
    for _ in range(12):  # past psycopg's prepare threshold; asyncpg prepares every time
        assert (await connection.execute(text("SELECT count(*) FROM users"))).scalar() == 0


async def _pid(connection):
    return (await connection.exec_driver_sql("SELECT pg_backend_pid()")).scalar()


async def test_leaves_a_prepared_statement(alchemy_async_connection):
    print("session", await _pid(alchemy_async_connection))
    await _many(alchemy_async_connection)
    await alchemy_async_connection.exec_driver_sql("PREPARE leaked AS SELECT 1")


async def test_driver_cache_still_works(alchemy_async_connection):
    print("session", await _pid(alchemy_async_connection))
    await _many(alchemy_async_connection)
    await alchemy_async_connection.exec_driver_sql("PREPARE leaked AS SELECT 1")
"""


@postgresql_only
@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_the_reset_keeps_the_drivers_statement_cache_valid(project: Project, driver: str) -> None:
    project.ini("asyncio_mode = strict")
    project.tests(DRIVER_CACHE)
    url = project.url.replace("postgresql+psycopg://", f"postgresql+{driver}://")
    result = project.run(
        "-s",
        "--alchemy-url",
        url,
        "-o",
        "asyncio_default_test_loop_scope=session",
        "-o",
        "asyncio_default_fixture_loop_scope=session",
        url=False,
    )
    result.assert_outcomes(passed=2)
    sessions = re.findall(r"session (\d+)", result.stdout.str())
    assert len(sessions) == 2, result.outlines
    assert sessions[0] == sessions[1], "both tests must run on the same pooled connection"
    if driver == "asyncpg":
        # psycopg itself deallocates everything after a rollback that follows a statement it
        # prepared, so there the plugin finds nothing left to reset.
        assert resets(result) >= 1
