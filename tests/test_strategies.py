"""Strategies drive their test through the same per-test cycle, sync and async.

A strategy defined only in a generated project's ``conftest.py`` (registered
with the ``pytest_alchemy_isolation_strategies`` hook) really commits each
test's writes and then empties the tables the test wrote, through what the
strategy context gives it (the backend's checks, the baseline, the guarded
emptying). The leak check stays on: a strategy that forgets a table gets the
test failed naming it, and the table is put back. The database is checked out
of band after the run (kept with ``--alchemy-keep-db``).
"""

from __future__ import annotations

import pytest

from .helpers import Project, failure_reports, sqlite_only

STRATEGIES = '''
import sqlalchemy as sa

from pytest_alchemy.isolation.base import EndResult, Strategy, TestTransaction


class CommitThenEmpty(Strategy):
    """Commits the test's writes for real, then empties the tables it wrote."""

    name = "commit_then_empty"
    commits = True
    spared = ()

    def begin(self, context, connection):
        return TestTransaction(connection)

    def end(self, context, transaction):
        connection = transaction.connection
        if connection.in_transaction():
            connection.rollback()
        checks = context.checks
        with connection.begin():
            written = [
                table
                for table in checks.table_names(connection)
                if connection.exec_driver_sql(
                    f"SELECT count(*) FROM {table.quoted(connection.dialect)}"
                ).scalar()
                != context.baseline.tables[table].count
                and table.name not in self.spared
            ]
            checks.empty_tables(connection, written)
        return EndResult(restored=tuple(written))


class ForgetsVendors(CommitThenEmpty):
    """The same, but it never empties the vendors table: the leak check must notice."""

    name = "forgets_vendors"
    spared = ("vendors",)


class OwnDatabase(CommitThenEmpty):
    """Each test on a database of its own, built from the run's schema, dropped after."""

    name = "own_database"

    def acquire(self, context):
        from pytest_alchemy.provision import Record

        name = f"{context.database}_own"
        provisioner = context.provisioner
        provisioner.create(name, Record(kind="run", state="in_use", owner=None))
        engine = sa.create_engine(provisioner.test_url(name), poolclass=sa.pool.NullPool)
        with engine.begin() as connection:
            context.schema.build(connection)
        engine.dispose()
        return name

    def release(self, context, database):
        context.provisioner.drop(database)


class Teleports(CommitThenEmpty):
    """Needs what no backend can do."""

    name = "teleports"
    requires = frozenset({"teleport"})


def pytest_alchemy_isolation_strategies():
    return [CommitThenEmpty, ForgetsVendors, OwnDatabase, Teleports]
'''

SYNC_TESTS = """
import pytest
import sqlalchemy as sa

from models import User, Vendor

pytestmark = pytest.mark.alchemy_db(isolation="commit_then_empty")


def seen_from_outside(database):
    engine = sa.create_engine(database.url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return connection.exec_driver_sql("SELECT name FROM users").scalars().all()
    finally:
        engine.dispose()


def test_commits_for_real(alchemy_session, alchemy_database):
    alchemy_session.add(User(name="ada"))
    alchemy_session.add(Vendor(name="acme"))
    alchemy_session.commit()
    assert seen_from_outside(alchemy_database) == ["ada"]


def test_finds_the_tables_emptied(alchemy_session):
    assert alchemy_session.query(User).count() == 0
    assert alchemy_session.query(Vendor).count() == 0


@pytest.mark.alchemy_db(isolation="forgets_vendors")
def test_leaves_a_vendor(alchemy_session):
    alchemy_session.add(User(name="bob"))
    alchemy_session.add(Vendor(name="left behind"))
    alchemy_session.commit()


def test_after_the_leak(alchemy_session):
    assert alchemy_session.query(Vendor).count() == 0
"""

ASYNC_TESTS = """
import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from models import User, Vendor

pytestmark = [pytest.mark.asyncio, pytest.mark.alchemy_db(isolation="commit_then_empty")]


async def test_commits_for_real_async(alchemy_async_session, alchemy_database):
    alchemy_async_session.add(User(name="ada"))
    await alchemy_async_session.commit()
    engine = sa.create_engine(alchemy_database.url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT name FROM users").scalars().all() == ["ada"]
    engine.dispose()


async def test_finds_the_tables_emptied_async(alchemy_async_session):
    assert await alchemy_async_session.scalar(select(func.count()).select_from(User)) == 0


@pytest.mark.alchemy_db(isolation="forgets_vendors")
async def test_leaves_a_vendor_async(alchemy_async_session):
    alchemy_async_session.add(Vendor(name="left behind"))
    await alchemy_async_session.commit()


async def test_after_the_leak_async(alchemy_async_session):
    assert await alchemy_async_session.scalar(select(func.count()).select_from(Vendor)) == 0
"""


def test_a_strategy_of_the_project_commits_and_cleans_up_sync_and_async(
    project: Project,
) -> None:
    project.write("conftest.py", STRATEGIES)
    project.tests(SYNC_TESTS, "test_sync.py")
    project.tests(ASYNC_TESTS, "test_async.py")

    result = project.run("-p", "no:randomly", "--alchemy-keep-db", "-o", "asyncio_mode=strict")

    result.assert_outcomes(passed=8, errors=2)
    text = result.stdout.str()
    for name in ("test_leaves_a_vendor", "test_leaves_a_vendor_async"):
        assert f"ERROR at teardown of {name} " in text
    # The errors themselves; the short summary repeats them (in full under CI).
    errors = failure_reports(text)
    assert errors.count("vendors (0 -> 1 rows, 1 added)") == 2
    assert "users (" not in text, "the users the strategy emptied are no leak"
    assert "2 leaks" in text
    # Out of band: every committed row is gone.
    assert project.sql("SELECT count(*) FROM users")[0][0] == 0
    assert project.sql("SELECT count(*) FROM vendors")[0][0] == 0


@sqlite_only
@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        (
            "[Taken]",
            "the isolation strategy Taken is registered under the name 'savepoint', which "
            "pytest_alchemy.isolation.savepoint:SavepointStrategy already has",
        ),
        ("[object]", "returned object, which is not a subclass"),
        ("[Unfinished]", "does not implement end, which every strategy needs"),
    ],
)
def test_a_strategy_that_cannot_be_registered_is_one_error(
    project: Project, returned: str, expected: str
) -> None:
    project.write(
        "conftest.py",
        f"""
        from pytest_alchemy.isolation.base import Strategy, TestTransaction


        class Taken(Strategy):
            name = "savepoint"
            commits = False

            def begin(self, context, connection):
                return TestTransaction(connection)

            def end(self, context, transaction):
                raise NotImplementedError


        class Unfinished(Strategy):
            name = "unfinished"
            commits = False

            def begin(self, context, connection):
                return TestTransaction(connection)


        def pytest_alchemy_isolation_strategies():
            return {returned}
        """,
    )
    project.tests("def test_nothing():\n    pass\n")
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert expected in result.stderr.str()
    assert "Traceback" not in result.stderr.str()


@sqlite_only
def test_the_strategies_of_the_project_are_valid_choices(project: Project) -> None:
    project.write("conftest.py", STRATEGIES)
    project.tests(
        """
        import pytest

        @pytest.mark.alchemy_db(isolation="no_such")
        def test_marked():
            pass
        """
    )
    result = project.run("--alchemy-isolation", "forgets_vendors")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (
        "names no isolation strategy. Valid choices: savepoint, truncate, recreate, clone, "
        "none, commit_then_empty, forgets_vendors, own_database, teleports." in result.stderr.str()
    )


@sqlite_only
def test_a_strategy_the_backend_cannot_do_is_a_clear_error(project: Project) -> None:
    project.write("conftest.py", STRATEGIES)
    project.tests(
        """
        import pytest

        @pytest.mark.alchemy_db(isolation="teleports")
        def test_marked(alchemy_session):
            pass

        def test_unmarked(alchemy_session):
            pass
        """
    )
    result = project.run()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*the isolation strategy 'teleports' needs teleport, which the sqlite backend "
            "cannot do. Choose one that works on sqlite: savepoint, truncate, recreate, none, "
            "commit_then_empty, forgets_vendors, own_database; or run these tests on a backend "
            "that can.*"
        ]
    )
    assert "Traceback" not in result.stdout.str()


OWN_DATABASE_TESTS = """
import pytest
from sqlalchemy import func, select

from models import User


def where(connection):
    if connection.dialect.name == "sqlite":
        return connection.exec_driver_sql("PRAGMA database_list").all()[0][2]
    return connection.exec_driver_sql("SELECT current_database()").scalar()


@pytest.mark.alchemy_db(isolation="own_database")
def test_on_its_own_database(alchemy_session, alchemy_database):
    alchemy_session.add(User(name="ada"))
    alchemy_session.commit()
    place = where(alchemy_session.connection())
    assert alchemy_database.name + "_own" in place, place


def test_the_runs_database_saw_nothing(alchemy_session):
    assert alchemy_session.scalar(select(func.count()).select_from(User)) == 0


@pytest.mark.asyncio
@pytest.mark.alchemy_db(isolation="own_database")
async def test_on_its_own_database_async(alchemy_async_connection, alchemy_database):
    await alchemy_async_connection.exec_driver_sql("INSERT INTO users (name) VALUES ('bob')")
    await alchemy_async_connection.commit()
    place = await alchemy_async_connection.run_sync(where)
    assert alchemy_database.name + "_own" in place, place


def test_the_runs_database_still_saw_nothing(alchemy_session):
    assert alchemy_session.scalar(select(func.count()).select_from(User)) == 0
"""


def test_a_strategy_may_run_each_test_on_a_database_of_its_own(project: Project) -> None:
    project.write("conftest.py", STRATEGIES)
    project.tests(OWN_DATABASE_TESTS)
    result = project.run("-p", "no:randomly", "--alchemy-keep-db", "-o", "asyncio_mode=strict")
    result.assert_outcomes(passed=4)
    assert "0 leaks" in result.stdout.str()
    assert not project.exists(f"{project.test_name}_own"), "given back after each test"
    assert project.sql("SELECT count(*) FROM users")[0][0] == 0
