"""A leak fails the test that caused it, names what leaked, and is cleaned up.

Each scenario is a generated project where one test escapes its isolation and
the next test checks the database is clean again. The database is also checked
out of band after the run (kept with ``--alchemy-keep-db``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from sqlalchemy.engine import make_url

from .helpers import MODELS, Project, drop_databases, postgresql_only, sqlite_only

SEED_USERS = (
    "INSERT INTO users (id, name) VALUES (101, 'seed one')",
    "INSERT INTO users (id, name) VALUES (102, 'seed two')",
)
"""Rows the project's seeding writes after the schema is built (``Project.seed``)."""

CLEAN_AFTER = """

def test_clean_after(alchemy_connection):
    rows = alchemy_connection.exec_driver_sql("SELECT id, name FROM users ORDER BY id").all()
    assert [tuple(row) for row in rows] == [(101, "seed one"), (102, "seed two")]
    assert alchemy_connection.exec_driver_sql("SELECT count(*) FROM vendors").scalar() == 0
"""

OTHER_ENGINE = """
import threading
import subprocess
import sys

import sqlalchemy as sa


def app_engine(database):
    # The app's own engine: its commits are real, outside the test's transaction.
    return sa.create_engine(database.url, poolclass=sa.pool.NullPool)


def test_writes_through_the_apps_engine(alchemy_database):
    engine = app_engine(alchemy_database)
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO vendors (name) VALUES ('leaked')")
    engine.dispose()


def test_updates_a_seed_row_from_a_thread(alchemy_database):
    def work():
        engine = app_engine(alchemy_database)
        with engine.begin() as connection:
            connection.exec_driver_sql("UPDATE users SET name = 'changed' WHERE id = 102")
        engine.dispose()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()


def test_deletes_and_reinserts_a_seed_row_from_a_subprocess(alchemy_database):
    code = (
        "import sqlalchemy as sa, sys\\n"
        "engine = sa.create_engine(sys.argv[1])\\n"
        "with engine.begin() as c:\\n"
        "    c.exec_driver_sql('DELETE FROM users WHERE id = 101')\\n"
        "    c.exec_driver_sql(\\"INSERT INTO users (id, name) VALUES (101, 'seed one ')\\")\\n"
    )
    url = alchemy_database.url.render_as_string(hide_password=False)
    subprocess.run([sys.executable, "-c", code, url], check=True)
"""


def _teardown_errors(result: pytest.RunResult) -> dict[str, str]:
    """Test name -> text of its teardown error."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in result.outlines:
        header = re.match(r"^_+ ERROR at teardown of (\w+) _+$", line)
        if header:
            current = found.setdefault(header.group(1), [])
        elif re.match(r"^(_+ |-{3,}|={3,})", line):
            current = None
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines) for name, lines in found.items()}


# On SQLite a second connection cannot write while the test holds the write lock:
# test_sqlite_second_writer_is_explained covers that side.
@postgresql_only
def test_writes_through_other_connections_fail_their_own_test_and_are_put_back(
    project: Project,
) -> None:
    project.ini(project.seed(*SEED_USERS))
    project.tests(OTHER_ENGINE + CLEAN_AFTER)
    result = project.run("-p", "no:randomly", "--alchemy-keep-db")
    result.assert_outcomes(passed=4, errors=3)
    errors = _teardown_errors(result)
    assert set(errors) == {
        "test_writes_through_the_apps_engine",
        "test_updates_a_seed_row_from_a_thread",
        "test_deletes_and_reinserts_a_seed_row_from_a_subprocess",
    }
    assert "vendors (0 -> 1 rows, 1 added)" in errors["test_writes_through_the_apps_engine"]
    assert "users (2 -> 2 rows, 1 changed)" in errors["test_updates_a_seed_row_from_a_thread"]
    assert (
        "users (2 -> 2 rows, 1 changed)"
        in errors["test_deletes_and_reinserts_a_seed_row_from_a_subprocess"]
    )
    for text in errors.values():
        assert "put these tables back to their baseline" in text
        assert "Traceback" not in text
    # Out of band: the kept database is at its baseline.
    rows = project.sql("SELECT id, name FROM users ORDER BY id")
    assert [tuple(row) for row in rows] == [(101, "seed one"), (102, "seed two")]
    assert project.sql("SELECT count(*) FROM vendors")[0][0] == 0


@postgresql_only
@pytest.mark.parametrize("mode", ["warn", "off"])
def test_leak_check_warn_and_off(project: Project, mode: str) -> None:
    project.ini(project.seed(*SEED_USERS))
    project.tests(OTHER_ENGINE.split("def test_updates", maxsplit=1)[0] + CLEAN_AFTER)
    result = project.run("-p", "no:randomly", f"--alchemy-leak-check={mode}")
    if mode == "warn":
        result.assert_outcomes(passed=2, warnings=1)
        assert "AlchemyLeakWarning" in result.stdout.str()
    else:
        # Off: nothing is compared, so nothing is put back and the next test sees the row.
        result.assert_outcomes(passed=1, failed=1)


NONE_STRATEGY = """
import pytest
from models import User

pytestmark = pytest.mark.alchemy_db(isolation="none")


def test_commits_for_real(alchemy_session):
    alchemy_session.add(User(name="left behind"))
    alchemy_session.commit()


def test_reads_only(alchemy_session):
    assert alchemy_session.query(User).count() == 2


def test_rolls_back(alchemy_session):
    alchemy_session.add(User(name="never committed"))
    alchemy_session.flush()
    alchemy_session.rollback()
"""


def test_under_none_a_test_that_leaves_rows_fails_and_the_rows_go(project: Project) -> None:
    project.ini(project.seed(*SEED_USERS))
    project.tests(NONE_STRATEGY + CLEAN_AFTER)
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(passed=4, errors=1)
    errors = _teardown_errors(result)
    assert list(errors) == ["test_commits_for_real"]
    assert "users (2 -> 3 rows, 1 added)" in errors["test_commits_for_real"]


NONE_UNCHECKED = """
import pytest
import sqlalchemy as sa


@pytest.mark.alchemy_db(isolation="none", leak_check="off")
def test_keeps_what_it_commits(alchemy_connection):
    alchemy_connection.exec_driver_sql("INSERT INTO users (id, name) VALUES (1, 'kept')")
    alchemy_connection.exec_driver_sql("CREATE TEMP TABLE scratch (id INTEGER)")
    alchemy_connection.commit()


def test_the_next_test_sees_the_rows_not_the_state(alchemy_connection):
    names = alchemy_connection.exec_driver_sql("SELECT name FROM users").scalars().all()
    assert names == ["kept"]
    alchemy_connection.exec_driver_sql("CREATE TEMP TABLE scratch (id INTEGER)")


def test_a_later_leak_counts_them(alchemy_database):
    engine = sa.create_engine(alchemy_database.url, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO users (id, name) VALUES (2, 'leaked')")
    engine.dispose()


def test_back_at_the_baseline(alchemy_connection):
    assert alchemy_connection.exec_driver_sql("SELECT count(*) FROM users").scalar() == 0
"""


def test_none_with_the_leak_check_off(project: Project) -> None:
    """What docs/isolation.md says of isolation="none" with leak_check="off": the rows
    stay (no error, no warning, no leak counted), the session state is still reset, and
    the baseline stays the run's, so a later leak counts those rows and removes them."""
    # Any commit on the server makes the next test's check compare, which would then take
    # the kept row for that test's leak: autovacuum's, after the row went in, is kept out.
    if project.backend == "postgresql":
        project.ini(project.seed("ALTER TABLE users SET (autovacuum_enabled = false)"))
    project.tests(NONE_UNCHECKED)
    result = project.run("-p", "no:randomly", "-W", "error::pytest_alchemy.AlchemyLeakWarning")
    result.assert_outcomes(passed=4, errors=1)
    errors = _teardown_errors(result)
    assert list(errors) == ["test_a_later_leak_counts_them"]
    assert "users (0 -> 2 rows, 2 added)" in errors["test_a_later_leak_counts_them"]
    assert re.search(
        r"^4 database tests, .*, 1 leaks, 1 connection resets$", result.stdout.str(), re.M
    )


SCHEMA_SEEDED = """
{seed}
alchemy_init_sql =
    CREATE TABLE extra (id INTEGER PRIMARY KEY)
    CREATE TABLE big (id INTEGER PRIMARY KEY)
    {big}
"""

BIG_SEED = (
    "INSERT INTO big (id) WITH RECURSIVE n(i) AS "
    "(SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10001) SELECT i FROM n"
)

SCHEMA_CHANGES = """
import pytest

pytestmark = pytest.mark.alchemy_db(isolation="none")


def test_creates_a_table(alchemy_connection):
    alchemy_connection.exec_driver_sql("CREATE TABLE scratch (id INTEGER PRIMARY KEY)")
    alchemy_connection.exec_driver_sql("INSERT INTO scratch (id) VALUES (1)")
    alchemy_connection.commit()


def test_drops_a_table(alchemy_connection):
    alchemy_connection.exec_driver_sql("DROP TABLE extra")
    alchemy_connection.commit()


def test_changes_one_seed_row_and_adds_one(alchemy_connection):
    alchemy_connection.exec_driver_sql("UPDATE users SET name = 'changed' WHERE id = 101")
    alchemy_connection.exec_driver_sql("INSERT INTO users (id, name) VALUES (103, 'new')")
    alchemy_connection.commit()


def test_removes_a_seed_row(alchemy_connection):
    alchemy_connection.exec_driver_sql("DELETE FROM users WHERE id = 102")
    alchemy_connection.commit()


def test_deletes_rows_of_a_big_seed_table(alchemy_connection):
    alchemy_connection.exec_driver_sql("DELETE FROM big WHERE id <= 10")
    alchemy_connection.commit()


def test_clean_after(alchemy_connection):
    rows = alchemy_connection.exec_driver_sql("SELECT id, name FROM users ORDER BY id").all()
    assert [tuple(row) for row in rows] == [(101, "seed one"), (102, "seed two")]
    # Emptied: its seed rows were too many to keep; said once, by the guilty test.
    assert alchemy_connection.exec_driver_sql("SELECT count(*) FROM big").scalar() == 0
"""


def test_tables_created_dropped_or_too_big_to_restore(project: Project) -> None:
    project.ini(SCHEMA_SEEDED.format(big=BIG_SEED, seed=project.seed(*SEED_USERS)))
    project.tests(SCHEMA_CHANGES)
    result = project.run("-p", "no:randomly", "--alchemy-keep-db")
    result.assert_outcomes(passed=6, errors=5)
    errors = {name: " ".join(text.split()) for name, text in _teardown_errors(result).items()}
    assert list(errors) == [
        "test_creates_a_table",
        "test_drops_a_table",
        "test_changes_one_seed_row_and_adds_one",
        "test_removes_a_seed_row",
        "test_deletes_rows_of_a_big_seed_table",
    ]
    created = errors["test_creates_a_table"]
    assert "scratch: table created (1 rows)" in created
    assert "put these tables back to their baseline" in created
    dropped = errors["test_drops_a_table"]
    assert "extra: table dropped" in dropped
    assert "could not restore extra (dropped); rebuild the database" in dropped
    assert (
        "users (2 -> 3 rows, 1 added, 1 changed)"
        in errors["test_changes_one_seed_row_and_adds_one"]
    )
    assert "users (2 -> 1 rows, 1 removed)" in errors["test_removes_a_seed_row"]
    big = errors["test_deletes_rows_of_a_big_seed_table"]
    assert "big (10001 -> 9991 rows)" in big
    assert "could not restore big (too many seed rows to keep)" in big
    tables = {name for (name,) in project.sql(TABLES[project.backend])}
    assert "scratch" not in tables
    assert "extra" not in tables


TABLES = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table'",
    "postgresql": "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
}


BREACHES = """
def test_commits_the_outer_transaction(alchemy_connection):
    alchemy_connection.exec_driver_sql("INSERT INTO vendors (name) VALUES ('committed')")
    alchemy_connection.commit()
    # Written after the breach, in a transaction the connection began by itself.
    alchemy_connection.exec_driver_sql("INSERT INTO users (name) VALUES ('after')")


def test_raw_commit_statement(alchemy_connection):
    alchemy_connection.exec_driver_sql("INSERT INTO vendors (name) VALUES ('raw')")
    alchemy_connection.exec_driver_sql("COMMIT")


def test_commits_the_outer_transaction_having_written_nothing(alchemy_connection):
    alchemy_connection.exec_driver_sql("SELECT count(*) FROM users").scalar()
    alchemy_connection.commit()


def test_rolls_back_the_outer_transaction_and_writes_again(alchemy_connection):
    alchemy_connection.exec_driver_sql("INSERT INTO vendors (name) VALUES ('rolled back')")
    alchemy_connection.rollback()
    alchemy_connection.exec_driver_sql("INSERT INTO vendors (name) VALUES ('after rollback')")
"""


def test_committing_the_outer_transaction_is_caught(project: Project) -> None:
    project.ini(project.seed(*SEED_USERS))
    project.tests(BREACHES + CLEAN_AFTER)
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(passed=5, errors=2)
    errors = _teardown_errors(result)
    assert "ended the outer transaction itself" in errors["test_commits_the_outer_transaction"]
    assert "vendors (0 -> 1 rows, 1 added)" in errors["test_commits_the_outer_transaction"]
    assert "users" not in errors["test_commits_the_outer_transaction"], "rolled back"
    assert "vendors" in errors["test_raw_commit_statement"]


UNRETURNED = """
import pytest

kept = []


def test_keeps_a_connection(alchemy_engine, alchemy_connection):
    kept.append(alchemy_engine.connect())


def test_next(alchemy_connection):
    kept.clear()
"""


def test_a_connection_never_returned_is_named_with_the_line_that_opened_it(
    project: Project,
) -> None:
    project.tests(UNRETURNED)
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=1)
    text = _teardown_errors(result)["test_keeps_a_connection"]
    assert "checked out 1 connection(s) of alchemy_engine and never returned them" in text
    assert "test_app.py:8 (test_keeps_a_connection)" in text


SQLITE_SECOND_WRITER = """
import sqlalchemy as sa
from models import User


def test_app_engine_cannot_write_meanwhile(alchemy_session, alchemy_database):
    alchemy_session.add(User(name="mine"))
    alchemy_session.flush()
    engine = sa.create_engine(alchemy_database.url, connect_args={"timeout": 0.2})
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO vendors (name) VALUES ('blocked')")
"""


@sqlite_only
def test_sqlite_second_writer_is_explained(project: Project) -> None:
    project.tests(SQLITE_SECOND_WRITER)
    result = project.run()
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert (
        "database is locked - pytest-alchemy: a test is running inside an open transaction" in text
    )
    assert "isolation='none'" in text


PER_TEST_LOOP = (
    """
import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from models import User


@pytest.mark.asyncio(loop_scope="function")
async def test_sets_the_journal_mode(alchemy_async_session, alchemy_database):
    engine = sa.create_engine(alchemy_database.url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        mode = connection.exec_driver_sql(f"PRAGMA journal_mode = {JOURNAL}").scalar()
    engine.dispose()
    assert mode == JOURNAL


@pytest.mark.asyncio(loop_scope="function")
async def test_the_app_commits_then_the_test_reads(alchemy_async_session, alchemy_database):
    engine = sa.create_engine(alchemy_database.url, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO vendors (name) VALUES ('leaked')")
    engine.dispose()
    assert await alchemy_async_session.scalar(select(func.count()).select_from(User)) == 2


@pytest.mark.asyncio(loop_scope="function")
async def test_only_reads(alchemy_async_session):
    assert await alchemy_async_session.scalar(select(func.count()).select_from(User)) == 2
"""
    + CLEAN_AFTER
)


@sqlite_only
@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_a_commit_elsewhere_during_a_test_on_its_own_event_loop_is_caught(
    project: Project, journal: str
) -> None:
    """A connection opened for one test only: its check reads the file's change counter
    in rollback-journal mode, and falls back to querying the database in WAL mode."""
    project.ini(project.seed(*SEED_USERS))
    project.tests(f"JOURNAL = {journal!r}\n" + PER_TEST_LOOP)
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(
        ["*test_the_app_commits_then_the_test_reads left changes*vendors (0 -> 1 rows, 1 added)*"]
    )
    assert "1 leaks" in result.stdout.str()


HOLDS_A_LOCK = """
import sqlalchemy as sa

held = []


def test_leaves_a_lock(alchemy_database, alchemy_connection):
    engine = sa.create_engine(alchemy_database.url)
    connection = engine.connect()
    connection.exec_driver_sql("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
    held.append(connection)


def test_next_is_not_blocked(alchemy_connection):
    assert alchemy_connection.exec_driver_sql("SELECT count(*) FROM users").scalar() == 0


def test_waits_on_a_lock_held_elsewhere(alchemy_database, alchemy_connection):
    engine = sa.create_engine(alchemy_database.url)
    other = engine.connect()
    other.exec_driver_sql("LOCK TABLE vendors IN ACCESS EXCLUSIVE MODE")
    try:
        alchemy_connection.exec_driver_sql("SELECT count(*) FROM vendors")
    finally:
        other.close()
        engine.dispose()
"""


@postgresql_only
def test_nothing_hangs_on_a_lock_a_test_left_behind(project: Project) -> None:
    project.tests(HOLDS_A_LOCK)
    result = project.run("-p", "no:randomly", "--alchemy-lock-timeout=2", timeout=120)
    result.assert_outcomes(passed=2, failed=1, errors=1)
    text = result.stdout.str()
    errors = _teardown_errors(result)
    assert "left 1 other connection(s) inside a transaction" in errors["test_leaves_a_lock"]
    assert "LOCK TABLE users IN ACCESS EXCLUSIVE MODE" in errors["test_leaves_a_lock"]
    # The lock wait of the last test is bounded and names the session holding the lock.
    assert "waited longer than alchemy_lock_timeout (2 s)" in text
    assert "LOCK TABLE vendors IN ACCESS EXCLUSIVE MODE" in text


# -- exact, whatever the driver ----------------------------------------------------------

KINDS_SEEDED = """
asyncio_mode = auto
alchemy_init_sql =
    CREATE TYPE mood AS ENUM ('calm', 'cross')
    CREATE TABLE kinds (id INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at TIMESTAMPTZ NOT NULL DEFAULT now(), doc JSON, data JSONB, amount NUMERIC(12, 3), tags TEXT[], grid INTEGER[], ref UUID DEFAULT gen_random_uuid(), blob BYTEA, mood mood, ratio FLOAT8, span INTERVAL, day DATE, twice INTEGER GENERATED ALWAYS AS (id * 2) STORED)
    INSERT INTO kinds (doc, data, amount, tags, grid, blob, mood, ratio, span, day) VALUES ('{"b": 1, "a": [1, 2]}', '{"k": {"n": null}}', 1.5, '{x,"y z"}', '{{1,2},{3,4}}', '\\x00ff10', 'calm', 0.1, '1 day 02:03:04', '2024-02-29')
    INSERT INTO kinds (at, doc, data, amount, tags, blob, mood, ratio) VALUES ('1999-12-31 23:59:59.999999+05:30', '[]', '[1, "two", 3.0]', -0.001, '{}', '', 'cross', 1e-300)
    INSERT INTO kinds DEFAULT VALUES
"""  # noqa: E501

KINDS_TESTS = """
import os

import pytest
import sqlalchemy as sa

ELSEWHERE = os.environ["OTHER_DATABASE_URL"]
TESTS = int(os.environ.get("KIND_TESTS", "12"))


def sync(url):
    return sa.create_engine(url.set(drivername="postgresql+psycopg"), poolclass=sa.pool.NullPool)


def meanwhile(step, database):
    # Commits the leak check must not take for the test's: on another database, by
    # VACUUM ANALYZE of the test database, and by the server's own bookkeeping.
    if step % 3 == 0:
        engine = sa.create_engine(ELSEWHERE, poolclass=sa.pool.NullPool)
        with engine.begin() as connection:
            connection.exec_driver_sql("SELECT txid_current()")
            connection.exec_driver_sql("INSERT INTO noise VALUES (1)")
    elif step % 3 == 1:
        engine = sync(database.url).execution_options(isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
    else:
        engine = sync(database.url)
        with engine.begin() as connection:
            connection.exec_driver_sql("SELECT txid_current()")
    engine.dispose()


{tests}


def test_leaks_for_real(alchemy_database):
    engine = sync(alchemy_database.url)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE kinds SET data = '{{\\"k\\": 1}}' WHERE id = 1")
    engine.dispose()


def test_put_back_exactly(alchemy_database):
    engine = sync(alchemy_database.url)
    with engine.connect() as connection:
        data = connection.exec_driver_sql("SELECT data FROM kinds WHERE id = 1").scalar()
    engine.dispose()
    assert data == {{"k": {{"n": None}}}}
"""

SYNC_KIND_TESTS = """
@pytest.mark.parametrize("step", range(TESTS))
def test_reads_and_writes(alchemy_connection, alchemy_database, step):
    rows = alchemy_connection.exec_driver_sql("SELECT * FROM kinds ORDER BY id").all()
    assert len(rows) == 3
    alchemy_connection.exec_driver_sql(
        "UPDATE kinds SET amount = amount + 1, tags = array_append(tags, 'n')"
    )
    meanwhile(step, alchemy_database)
"""

ASYNC_KIND_TESTS = """
@pytest.mark.parametrize("step", range(TESTS))
async def test_reads_and_writes(alchemy_async_connection, alchemy_database, step):
    result = await alchemy_async_connection.exec_driver_sql("SELECT * FROM kinds ORDER BY id")
    assert len(result.all()) == 3
    await alchemy_async_connection.exec_driver_sql(
        "UPDATE kinds SET amount = amount + 1, tags = array_append(tags, 'n')"
    )
    meanwhile(step, alchemy_database)
"""

KIND_DRIVERS = [
    pytest.param("postgresql+asyncpg", ASYNC_KIND_TESTS, id="asyncpg"),
    pytest.param("postgresql+psycopg", ASYNC_KIND_TESTS, id="psycopg-async"),
    pytest.param("postgresql+psycopg", SYNC_KIND_TESTS, id="psycopg"),
]


@postgresql_only
@pytest.mark.parametrize(("driver", "suite"), KIND_DRIVERS)
def test_no_false_leaks_whatever_the_driver_and_a_real_one_still_fails(
    project: Project, driver: str, suite: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seed rows of every kind of column, read through one driver at the baseline
    and another after each test, while other databases, VACUUM ANALYZE and a second
    run on the same server commit meanwhile: no test is blamed but the guilty one."""
    assert project.admin is not None
    assert project.server_url is not None
    elsewhere = f"elsewhere_{os.getpid()}"
    drop_databases(project.admin, [elsewhere, "test_second"])
    with project.admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{elsewhere}"')
    other = project.server_url.set(database=elsewhere).render_as_string(hide_password=False)
    # Made once here: two runs creating it at the same time would collide on its type.
    project.sql("CREATE TABLE noise (id INTEGER)", elsewhere)
    project.ini(KINDS_SEEDED)
    project.write("models.py", MODELS)
    project.tests(KINDS_TESTS.format(tests=suite))
    url = make_url(project.url).set(drivername=driver)
    str_url = url.render_as_string(hide_password=False)
    env = {**os.environ, "OTHER_DATABASE_URL": other, "KIND_TESTS": "60"}
    # A second run of the same suite on the same server, at the same time.
    second = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            "-q",
            "--alchemy-url",
            url.set(database="second").render_as_string(hide_password=False),
        ],
        cwd=project.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        monkeypatch.setenv("OTHER_DATABASE_URL", other)
        monkeypatch.setenv("KIND_TESTS", "24")
        result = project.run("--alchemy-url", str_url, "-p", "no:randomly", url=False, timeout=300)
        output, _ = second.communicate(timeout=300)
    finally:
        if second.poll() is None:
            second.kill()
        drop_databases(project.admin, [elsewhere, "test_second"])
    result.assert_outcomes(passed=26, errors=1)
    errors = _teardown_errors(result)
    assert list(errors) == ["test_leaks_for_real"], errors
    assert "kinds (3 -> 3 rows, 1 changed)" in " ".join(errors["test_leaks_for_real"].split())
    result.stdout.fnmatch_lines(["*26 database tests*1 leaks*"])
    # The second run saw the same: only its own guilty test.
    assert "62 passed, 1 error" in output, output


SQLITE_KINDS = """
alchemy_init_sql =
    CREATE TABLE kinds (id INTEGER PRIMARY KEY, at DATETIME, ratio REAL, blob BLOB, loose, twice INTEGER GENERATED ALWAYS AS (id * 2) STORED)
    INSERT INTO kinds (id, at, ratio, blob, loose) VALUES (1, '2024-02-29 10:11:12.131415', 0.30000000000000004, X'00FF10', '7')
    INSERT INTO kinds (id, at, ratio, blob, loose) VALUES (2, NULL, 1e-300, X'', 7)
"""  # noqa: E501

SQLITE_KIND_TESTS = """
import sqlite3


def images(path):
    with sqlite3.connect(path) as connection:
        return connection.execute(
            "SELECT quote(id), quote(at), quote(ratio), quote(blob), quote(loose), twice "
            "FROM kinds ORDER BY id"
        ).fetchall()


def test_leaks_for_real(alchemy_database, tmp_path):
    path = alchemy_database.url.database
    (tmp_path / "before").write_text(repr(images(path)))
    with sqlite3.connect(path) as connection:
        connection.execute("DELETE FROM kinds")
        connection.execute("INSERT INTO kinds (id, at, ratio, blob, loose) VALUES (1, 1, 1, 1, 1)")


def test_put_back_exactly(alchemy_database, tmp_path_factory):
    before = next(tmp_path_factory.getbasetemp().glob("*/before")).read_text()
    assert repr(images(alchemy_database.url.database)) == before
"""


@sqlite_only
def test_sqlite_seed_rows_are_put_back_with_their_storage_classes(project: Project) -> None:
    """Reals with all their digits, blobs, text that looks like a number: the seed
    rows come back exactly as stored, whatever SQLAlchemy would have made of them."""
    project.ini(SQLITE_KINDS)
    project.tests(SQLITE_KIND_TESTS)
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=1)
    errors = _teardown_errors(result)
    assert list(errors) == ["test_leaks_for_real"]
    assert "kinds (2 -> 1 rows, 1 removed, 1 changed)" in " ".join(
        errors["test_leaks_for_real"].split()
    )
