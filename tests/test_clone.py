"""The ``clone`` strategy (PostgreSQL): every test runs on a database of its own,
copied from the run's template ahead of time, dropped afterwards.

The generated projects seed one user (the schema step's rows) and an audit
trigger; tests commit through their session, their own engine and a thread,
change the schema, and the next test checks it got a fresh copy. After the run
the server is checked out of band: no copy is left, the run's database holds
its seed row only.
"""

from __future__ import annotations

import signal
import time

import pytest

from .helpers import Project, pg_databases, postgresql_only, sqlite_only
from .test_truncate import AUDIT_MODELS, POSTGRESQL_TRIGGER, SHUFFLED


def seeded(project: Project, extra_ini: str = "", isolation: str = "clone") -> None:
    """The standard models plus ``audit``; one seed user, then the audit trigger."""
    project.write("models.py", (project.path / "models.py").read_text() + AUDIT_MODELS)
    seed = project.seed("INSERT INTO users (name) VALUES ('seed')", *POSTGRESQL_TRIGGER)
    project.ini(f"alchemy_isolation = {isolation}\n{seed}\n{extra_ini}")


def copies(project: Project) -> set[str]:
    """The databases the clone strategy made for the project, left on the server."""
    assert project.admin is not None
    return {
        name
        for name in pg_databases(project.admin)
        if name.startswith(project.test_name + "_c") or name.endswith("_source")
        if project.app_db in name
    }


SYNC_TESTS = """
import threading

import sqlalchemy as sa
from sqlalchemy import func, select

from models import Application, Audit, User, Vendor


def own_engine(connection):
    return sa.create_engine(connection.engine.url, poolclass=sa.pool.NullPool)


def names(session):
    return session.scalars(select(User.name).order_by(User.id)).all()


def database_of(connection):
    return connection.exec_driver_sql("SELECT current_database()").scalar()


def test_runs_on_a_copy_of_its_own(alchemy_connection, alchemy_database):
    assert database_of(alchemy_connection) != alchemy_database.name
    assert database_of(alchemy_connection).startswith(alchemy_database.name + "_c")


def test_commits_for_real(alchemy_session, alchemy_connection):
    alchemy_session.add(User(name="ada"))
    alchemy_session.commit()
    engine = own_engine(alchemy_connection)
    with engine.connect() as connection:
        seen = connection.exec_driver_sql("SELECT name FROM users ORDER BY id").scalars().all()
        audit = connection.exec_driver_sql("SELECT what FROM audit").scalars().all()
    engine.dispose()
    assert seen == ["seed", "ada"]
    assert audit == ["insert ada"], "the user's trigger fires during the test"


def test_ids_start_where_the_seed_left_them(alchemy_session):
    assert names(alchemy_session) == ["seed"]
    assert alchemy_session.scalar(select(func.count()).select_from(Audit)) == 0
    user = User(name="bob")
    alchemy_session.add(user)
    alchemy_session.commit()
    assert user.id == 2


def test_a_second_connection_commits(alchemy_session, alchemy_connection):
    engine = own_engine(alchemy_connection)
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO users (name) VALUES ('dan')")
        connection.exec_driver_sql("DELETE FROM users WHERE name = 'seed'")
    engine.dispose()
    assert names(alchemy_session) == ["dan"]


def test_a_thread_commits(alchemy_session, alchemy_connection):
    def write():
        engine = own_engine(alchemy_connection)
        with engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO vendors (name) VALUES ('from a thread')")
        engine.dispose()

    thread = threading.Thread(target=write)
    thread.start()
    thread.join()
    assert alchemy_session.scalar(select(func.count()).select_from(Vendor)) == 1


def test_a_foreign_key_cycle(alchemy_session):
    vendor = Vendor(name="acme")
    alchemy_session.add(vendor)
    alchemy_session.flush()
    application = Application(vendor_id=vendor.id)
    alchemy_session.add(application)
    alchemy_session.flush()
    vendor.featured_id = application.id
    alchemy_session.commit()


def test_changes_the_schema(alchemy_connection):
    alchemy_connection.exec_driver_sql("DROP TABLE audit CASCADE")
    alchemy_connection.exec_driver_sql("ALTER TABLE users ADD COLUMN extra integer")
    alchemy_connection.exec_driver_sql("CREATE TABLE scratch (id integer)")
    alchemy_connection.commit()


def test_starts_clean(alchemy_session, alchemy_connection):
    assert names(alchemy_session) == ["seed"]
    assert alchemy_session.scalar(select(func.count()).select_from(Vendor)) == 0
    assert alchemy_session.scalar(select(func.count()).select_from(Application)) == 0
    assert alchemy_session.scalar(select(func.count()).select_from(Audit)) == 0
    columns = alchemy_connection.exec_driver_sql(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users'"
    ).scalar()
    assert columns == 2
    assert alchemy_connection.exec_driver_sql("SELECT to_regclass('scratch')").scalar() is None
"""


@postgresql_only
@pytest.mark.parametrize(
    ("seed", "ini"),
    [
        (None, ""),
        (1, ""),
        (2, "alchemy_seed_in_template = true"),
        (3, "alchemy_template_cache = false"),
    ],
    ids=["in-order", "shuffled", "seed-in-template", "no-template"],
)
def test_clone_gives_each_test_a_fresh_copy(project: Project, seed: int | None, ini: str) -> None:
    seeded(project, ini)
    project.tests(SYNC_TESTS)
    if seed is not None:
        project.write("conftest.py", SHUFFLED.format(seed=seed))
    result = project.run("-p", "no:randomly", "--alchemy-keep-db")
    result.assert_outcomes(passed=8)
    assert "0 leaks" in result.stdout.str()
    result.stdout.fnmatch_lines(["clone: 8 tests on copies made ahead*"])
    # Out of band: every copy is gone, and the run's database never saw a test's rows.
    assert not copies(project)
    assert project.sql("SELECT id, name FROM users") == [(1, "seed")]
    for table in ("vendors", "applications", "audit"):
        assert project.sql(f"SELECT count(*) FROM {table}")[0][0] == 0, table


APP = """
import os

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

engine = sa.create_engine(os.environ["DATABASE_URL"])
SessionLocal = sessionmaker(engine)


def database_from_settings():
    # Code that reads its settings at run time (a worker, a CLI command).
    other = sa.create_engine(os.environ["DATABASE_URL"], poolclass=sa.pool.NullPool)
    with other.connect() as connection:
        found = connection.exec_driver_sql("SELECT current_database()").scalar()
    other.dispose()
    return found
"""

APP_TESTS = """
import os

import pytest
import sqlalchemy as sa
from sqlalchemy import text

import app
from models import User


def test_the_apps_session_and_settings_lead_to_the_copy(alchemy_connection):
    copy = alchemy_connection.exec_driver_sql("SELECT current_database()").scalar()
    with app.SessionLocal() as session:
        assert session.execute(text("SELECT current_database()")).scalar() == copy
        session.add(User(name="from the app"))
        session.commit()
    assert copy in os.environ["DATABASE_URL"]
    assert app.database_from_settings() == copy


@pytest.mark.alchemy_db(isolation="savepoint")
def test_afterwards_they_lead_to_the_run_database_again(alchemy_database):
    assert sa.make_url(os.environ["DATABASE_URL"]).database == alchemy_database.name
    assert app.database_from_settings() == alchemy_database.name
    with app.SessionLocal() as session:
        assert session.execute(text("SELECT count(*) FROM users")).scalar() == 1
"""


@postgresql_only
def test_the_apps_sessions_and_environment_follow_the_copy(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded(project, "alchemy_env = DATABASE_URL\nalchemy_app_sessions = app:SessionLocal")
    monkeypatch.setenv("DATABASE_URL", project.url)
    project.write("app.py", APP)
    project.tests(APP_TESTS)
    result = project.run("-p", "no:randomly", "--alchemy-keep-db")
    result.assert_outcomes(passed=2)
    assert "0 leaks" in result.stdout.str()
    assert project.sql("SELECT name FROM users") == [("seed",)]
    assert not copies(project)


LEAKING_TESTS = """
import sqlalchemy as sa


def test_writes_to_the_run_database(alchemy_database):
    # An engine the test made on the run's database, not on its copy.
    engine = sa.create_engine(alchemy_database.url, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO vendors (name) VALUES ('leaked')")
    engine.dispose()


def test_after_it(alchemy_session):
    pass
"""


@postgresql_only
def test_a_write_to_the_run_database_fails_the_test_that_made_it(project: Project) -> None:
    seeded(project)
    project.tests(LEAKING_TESTS)
    result = project.run("-p", "no:randomly", "--alchemy-keep-db")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_writes_to_the_run_database*"])
    assert "vendors" in result.stdout.str()
    assert project.sql("SELECT count(*) FROM vendors")[0][0] == 0, "the leak was put back"


ASYNC_TESTS = """
import pytest
from sqlalchemy import func, select, text

from models import Audit, User, Vendor

pytestmark = pytest.mark.asyncio


async def test_commits_on_a_copy_async(alchemy_async_session, alchemy_database):
    database = (await alchemy_async_session.execute(text("SELECT current_database()"))).scalar()
    assert database != alchemy_database.name
    user = User(name="ada")
    alchemy_async_session.add_all([user, Vendor(name="acme")])
    await alchemy_async_session.commit()
    assert user.id == 2


async def test_changes_the_schema_async(alchemy_async_connection):
    await alchemy_async_connection.exec_driver_sql("DROP TABLE vendors CASCADE")
    await alchemy_async_connection.commit()


async def test_starts_clean_async(alchemy_async_session):
    names = (await alchemy_async_session.scalars(select(User.name))).all()
    assert names == ["seed"]
    assert await alchemy_async_session.scalar(select(func.count()).select_from(Vendor)) == 0
    assert await alchemy_async_session.scalar(select(func.count()).select_from(Audit)) == 0
"""


@postgresql_only
@pytest.mark.parametrize("seed", [None, 4])
def test_clone_async(project: Project, seed: int | None) -> None:
    seeded(project)
    project.tests(ASYNC_TESTS)
    if seed is not None:
        project.write("conftest.py", SHUFFLED.format(seed=seed))
    result = project.run("-p", "no:randomly", "--alchemy-keep-db", "-o", "asyncio_mode=strict")
    result.assert_outcomes(passed=3)
    assert "0 leaks" in result.stdout.str()
    assert project.sql("SELECT id, name FROM users") == [(1, "seed")]
    assert project.sql("SELECT count(*) FROM vendors")[0][0] == 0
    assert not copies(project)


@sqlite_only
def test_clone_on_sqlite_names_the_strategies_that_work(project: Project) -> None:
    project.ini("alchemy_isolation = clone")
    project.tests("def test_db(alchemy_session):\n    pass\n")
    result = project.run()
    assert result.ret != 0
    output = result.stdout.str()
    assert "the isolation strategy 'clone' needs clone" in output
    assert "savepoint, truncate, recreate, none" in output


HELD_OPEN = """
import pytest
import sqlalchemy as sa


@pytest.fixture(scope="session", autouse=True)
def held(alchemy_database, alchemy_blocker):
    # A tool that stays connected to the run's database for the whole run.
    engine = sa.create_engine(alchemy_database.url, poolclass=sa.pool.NullPool)
    with alchemy_blocker.unblock(), engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")
        connection.commit()
        yield
    engine.dispose()
"""


@postgresql_only
def test_a_copy_that_cannot_be_made_says_why_and_what_works(project: Project) -> None:
    """Without a template, the run's database itself is copied: a session that stays on
    it keeps it from being copied, and the message names it and the alternatives."""
    seeded(project, "alchemy_template_cache = false", isolation="savepoint")
    project.write("conftest.py", HELD_OPEN)
    project.tests(
        """
        import pytest


        @pytest.fixture
        def alchemy_isolation():
            return "clone"


        def test_one(alchemy_session):
            pass


        def test_two(alchemy_session):
            pass
        """
    )
    result = project.run("-p", "no:randomly", "--alchemy-lock-timeout", "1")
    result.assert_outcomes(errors=2)
    output = result.stdout.str()
    assert "the clone strategy copies" in output
    assert "other sessions stayed connected" in output
    assert "isolation='truncate'" in output
    assert not copies(project)


SLOW_TESTS = """
import time


def test_a(alchemy_session):
    time.sleep(60)
"""


@postgresql_only
def test_the_copies_of_a_killed_run_are_reaped_by_the_next(project: Project) -> None:
    seeded(project)
    project.tests(SLOW_TESTS)
    process = project.start("-q")
    try:
        deadline = time.monotonic() + 60
        while len(copies(project)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        left = copies(project)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert len(left) >= 2, "the test runs on a copy while another is ready"
    made = [name for name in left if not name.endswith("_source")]
    assert len(made) <= 3, f"the pool is bounded: the test's copy and two ready, not {made}"
    assert copies(project) >= left - {name for name in left if "_source" in name}
    project.tests("def test_b(alchemy_session):\n    pass\n")
    result = project.run("-q")
    result.assert_outcomes(passed=1)
    assert not copies(project), "the dead run's copies were reaped, the new run's dropped"


COMMITTED_BY_A_SESSION_FIXTURE = """
import pytest
import sqlalchemy as sa


@pytest.fixture(scope="session", autouse=True)
def reference_rows(alchemy_database, alchemy_blocker):
    # Rows a fixture wider than a test commits: every later test must find them.
    engine = sa.create_engine(alchemy_database.url, poolclass=sa.pool.NullPool)
    with alchemy_blocker.unblock(), engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO vendors (name) SELECT 'vendor ' || n FROM generate_series(1, {rows}) n"
        )
    engine.dispose()
"""

SEES_THE_FIXTURES_ROWS = """
import pytest
from sqlalchemy import func, select, text

from models import User, Vendor


@pytest.mark.parametrize("turn", range(3))
def test_the_copy_holds_the_fixtures_rows(alchemy_session, alchemy_database, turn):
    database = alchemy_session.execute(text("SELECT current_database()")).scalar()
    assert database != alchemy_database.name
    assert alchemy_session.scalar(select(func.count()).select_from(Vendor)) == {rows}
    assert alchemy_session.scalars(select(User.name)).all() == ["seed"]
    alchemy_session.add(Vendor(name="mine"))
    alchemy_session.commit()
"""


@postgresql_only
@pytest.mark.parametrize("ini", ["", "alchemy_seed_in_template = true"])
def test_rows_a_session_fixture_committed_are_in_every_copy(project: Project, ini: str) -> None:
    seeded(project, ini)
    project.write("conftest.py", COMMITTED_BY_A_SESSION_FIXTURE.format(rows=5))
    project.tests(SEES_THE_FIXTURES_ROWS.format(rows=5))
    result = project.run("-p", "no:randomly", "--alchemy-keep-db")
    result.assert_outcomes(passed=3)
    assert "0 leaks" in result.stdout.str()
    assert project.sql("SELECT count(*) FROM vendors") == [(5,)]
    assert not copies(project)


@postgresql_only
def test_too_many_rows_for_a_copy_are_an_error_saying_what_works(project: Project) -> None:
    seeded(project)
    project.write("conftest.py", COMMITTED_BY_A_SESSION_FIXTURE.format(rows=10_001))
    project.tests(SEES_THE_FIXTURES_ROWS.format(rows=10_001))
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(errors=3)
    output = result.stdout.str()
    assert "cannot copy the seed rows of vendors: there are too many to keep" in output
    assert "isolation='truncate'" in output
    assert not copies(project)


@postgresql_only
def test_a_database_left_with_a_copys_name_is_replaced(project: Project) -> None:
    """A database named like a copy (left by hand, with no record of a live run) is
    dropped and made again as this run's copy."""
    seeded(project)
    assert project.admin is not None
    with project.admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{project.test_name}_c1"')
    project.tests(SYNC_TESTS)
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(passed=8)
    assert not copies(project)
