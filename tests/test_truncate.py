"""The ``truncate`` strategy: tests commit for real, and afterwards only the tables
they wrote are emptied, their seed rows put back, their ids started again.

Each generated project seeds one user (the rows the schema step made) and an
audit trigger that records every insert into and delete from ``users``: the
clean-up must not fire it. Tests commit through the test's session, through an
engine of their own and from a thread; the next test checks it starts clean,
and the database is checked out of band after the run (kept with
``--alchemy-keep-db``).
"""

from __future__ import annotations

import pytest

from .helpers import Project, postgresql_only, sqlite_only

AUDIT_MODELS = """

class Audit(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    what: Mapped[str] = mapped_column(String(50))
"""

SQLITE_TRIGGER = (
    "CREATE TRIGGER users_audit_insert AFTER INSERT ON users BEGIN "
    "INSERT INTO audit (what) VALUES ('insert ' || NEW.name); END",
    "CREATE TRIGGER users_audit_delete AFTER DELETE ON users BEGIN "
    "INSERT INTO audit (what) VALUES ('delete ' || OLD.name); END",
)
POSTGRESQL_TRIGGER = (
    "CREATE FUNCTION audit_users() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "INSERT INTO audit (what) VALUES (lower(TG_OP) || ' ' || "
    "CASE WHEN TG_OP = 'DELETE' THEN OLD.name ELSE NEW.name END); RETURN NULL; END $$",
    "CREATE TRIGGER users_audit AFTER INSERT OR DELETE OR UPDATE ON users "
    "FOR EACH ROW EXECUTE FUNCTION audit_users()",
    "CREATE FUNCTION audit_truncate() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "INSERT INTO audit (what) VALUES ('truncate'); RETURN NULL; END $$",
    "CREATE TRIGGER users_audit_truncate AFTER TRUNCATE ON users "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_truncate()",
)
SHUFFLED = """
import random


def pytest_collection_modifyitems(items):
    random.Random({seed}).shuffle(items)
"""


def seeded(project: Project, extra_ini: str = "") -> None:
    """The standard models plus ``audit``; one seed user, then the audit triggers."""
    project.write("models.py", (project.path / "models.py").read_text() + AUDIT_MODELS)
    triggers = SQLITE_TRIGGER if project.backend == "sqlite" else POSTGRESQL_TRIGGER
    seed = project.seed("INSERT INTO users (name) VALUES ('seed')", *triggers)
    project.ini(f"alchemy_isolation = truncate\n{seed}\n{extra_ini}")


SYNC_TESTS = """
import threading

import sqlalchemy as sa
from sqlalchemy import func, select

from models import Application, Audit, User, Vendor


def own_engine(database):
    return sa.create_engine(database.url, poolclass=sa.pool.NullPool)


def names(session):
    return session.scalars(select(User.name).order_by(User.id)).all()


def test_commits_for_real(alchemy_session, alchemy_database):
    alchemy_session.add(User(name="ada"))
    alchemy_session.commit()
    engine = own_engine(alchemy_database)
    with engine.connect() as connection:
        seen = connection.exec_driver_sql("SELECT name FROM users ORDER BY id").scalars().all()
    engine.dispose()
    assert seen == ["seed", "ada"]


def test_after_a_commit_ids_start_again(alchemy_session):
    assert names(alchemy_session) == ["seed"]
    assert alchemy_session.scalar(select(func.count()).select_from(Audit)) == 0
    user = User(name="bob")
    alchemy_session.add(user)
    alchemy_session.commit()
    assert user.id == 2


def test_ids_started_again_after_the_last_one_too(alchemy_session):
    user = User(name="cid")
    alchemy_session.add(user)
    alchemy_session.commit()
    assert user.id == 2
    assert names(alchemy_session) == ["seed", "cid"]


def test_a_second_connection_commits(alchemy_session, alchemy_database):
    engine = own_engine(alchemy_database)
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO users (name) VALUES ('dan')")
        connection.exec_driver_sql("DELETE FROM users WHERE name = 'seed'")
    engine.dispose()
    assert names(alchemy_session) == ["dan"]


def test_a_thread_commits(alchemy_session, alchemy_database):
    def write():
        engine = own_engine(alchemy_database)
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


def test_the_seed_row_changed(alchemy_session):
    seed = alchemy_session.scalars(select(User)).one()
    seed.name = "renamed"
    alchemy_session.commit()


def test_starts_clean(alchemy_session):
    assert names(alchemy_session) == ["seed"]
    assert alchemy_session.scalar(select(func.count()).select_from(Vendor)) == 0
    assert alchemy_session.scalar(select(func.count()).select_from(Application)) == 0
    assert alchemy_session.scalar(select(func.count()).select_from(Audit)) == 0
"""


@pytest.mark.parametrize("seed", [None, 1, 2])
def test_truncate_commits_and_empties_what_the_test_wrote(
    project: Project, seed: int | None
) -> None:
    seeded(project)
    project.tests(SYNC_TESTS)
    if seed is not None:
        project.write("conftest.py", SHUFFLED.format(seed=seed))
    result = project.run("-p", "no:randomly", "--alchemy-keep-db")
    result.assert_outcomes(passed=8)
    assert "0 leaks" in result.stdout.str()
    # Out of band: the seed row alone is left, as the seeding made it, and the audit
    # trigger never fired during the clean-up.
    assert project.sql("SELECT id, name FROM users") == [(1, "seed")]
    for table in ("vendors", "applications", "audit"):
        assert project.sql(f"SELECT count(*) FROM {table}")[0][0] == 0, table


ASYNC_TESTS = """
import pytest
from sqlalchemy import func, select

from models import Audit, User, Vendor

pytestmark = pytest.mark.asyncio


async def test_commits_for_real_async(alchemy_async_session):
    user = User(name="ada")
    alchemy_async_session.add_all([user, Vendor(name="acme")])
    await alchemy_async_session.commit()
    assert user.id == 2


async def test_starts_clean_async(alchemy_async_session):
    names = (await alchemy_async_session.scalars(select(User.name))).all()
    assert names == ["seed"]
    assert await alchemy_async_session.scalar(select(func.count()).select_from(Vendor)) == 0
    assert await alchemy_async_session.scalar(select(func.count()).select_from(Audit)) == 0


async def test_the_connection_commits_async(alchemy_async_connection):
    await alchemy_async_connection.exec_driver_sql("DELETE FROM users")
    await alchemy_async_connection.commit()
"""

MIXED_TESTS = """
import pytest
from sqlalchemy import func, select

from models import User


def count(session):
    return session.scalar(select(func.count()).select_from(User))


@pytest.mark.alchemy_db(isolation="savepoint")
def test_rolled_back(alchemy_session):
    alchemy_session.add(User(name="in a savepoint"))
    alchemy_session.commit()
    assert count(alchemy_session) == 2


def test_truncated(alchemy_session):
    assert count(alchemy_session) == 1
    alchemy_session.add(User(name="committed"))
    alchemy_session.commit()


class TestMarked:
    pytestmark = pytest.mark.alchemy_db(isolation="savepoint")

    def test_in_a_savepoint_again(self, alchemy_session):
        assert count(alchemy_session) == 1
        alchemy_session.add(User(name="again"))
        alchemy_session.commit()


def test_truncated_again(alchemy_session):
    assert count(alchemy_session) == 1
"""


def test_truncate_async(project: Project) -> None:
    seeded(project)
    project.tests(ASYNC_TESTS)
    result = project.run("-p", "no:randomly", "--alchemy-keep-db", "-o", "asyncio_mode=strict")
    result.assert_outcomes(passed=3)
    assert "0 leaks" in result.stdout.str()
    assert project.sql("SELECT id, name FROM users") == [(1, "seed")]
    assert project.sql("SELECT count(*) FROM audit")[0][0] == 0


@pytest.mark.parametrize("seed", [None, 3])
def test_truncate_and_savepoint_tests_in_one_run(project: Project, seed: int | None) -> None:
    seeded(project)
    project.tests(MIXED_TESTS)
    if seed is not None:
        project.write("conftest.py", SHUFFLED.format(seed=seed))
    result = project.run("-p", "no:randomly", "--alchemy-keep-db")
    result.assert_outcomes(passed=4)
    assert project.sql("SELECT name FROM users") == [("seed",)]


def test_keep_tables_keep_what_tests_wrote(project: Project) -> None:
    seeded(project, "alchemy_keep_tables = vendors")
    project.tests(
        """
        from sqlalchemy import func, select

        from models import User, Vendor


        def test_writes_both(alchemy_session):
            alchemy_session.add_all([User(name="ada"), Vendor(name="kept")])
            alchemy_session.commit()


        def test_only_the_kept_table_kept_its_row(alchemy_session):
            assert alchemy_session.scalars(select(Vendor.name)).all() == ["kept"]
            assert alchemy_session.scalar(select(func.count()).select_from(User)) == 1
        """
    )
    result = project.run("-p", "no:randomly", "--alchemy-keep-db")
    result.assert_outcomes(passed=2)
    assert "0 leaks" in result.stdout.str(), "what a kept table holds is no leak"
    assert project.sql("SELECT name FROM vendors") == [("kept",)]
    assert project.sql("SELECT count(*) FROM users")[0][0] == 1


def test_a_dropped_table_is_said_on_the_test_that_dropped_it(project: Project) -> None:
    seeded(project)
    project.tests(
        """
        def test_drops_a_table(alchemy_connection):
            alchemy_connection.exec_driver_sql("DROP TABLE audit")
            alchemy_connection.commit()


        def test_after_it(alchemy_session):
            pass
        """
    )
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_drops_a_table*",
            "*the test dropped audit, which the truncate strategy cannot put back*",
        ]
    )


@sqlite_only
def test_sqlite_commits_do_not_wait_for_the_disk(project: Project) -> None:
    seeded(project)
    project.tests(
        """
        def test_synchronous_off(alchemy_connection):
            assert alchemy_connection.exec_driver_sql("PRAGMA synchronous").scalar() == 0
            # The rollback journal is kept between transactions, not made and deleted.
            mode = alchemy_connection.exec_driver_sql("PRAGMA journal_mode").scalar()
            assert mode == "persist"
        """
    )
    project.run().assert_outcomes(passed=1)


def test_a_table_made_during_a_test_is_dropped_and_the_next_look_sees_the_schema_again(
    project: Project,
) -> None:
    """The tables and their columns are read again when the schema changed: a table made
    during one test is found and dropped after it, and a seed row changed in the next
    (same row count: only its digest tells) is put back."""
    seeded(project)
    project.tests(
        """
        from sqlalchemy import inspect, text


        def test_makes_a_table(alchemy_connection):
            alchemy_connection.exec_driver_sql("CREATE TABLE extra (id INTEGER PRIMARY KEY)")
            alchemy_connection.exec_driver_sql("INSERT INTO extra (id) VALUES (1)")
            alchemy_connection.commit()


        def test_it_is_gone(alchemy_connection, alchemy_session):
            assert "extra" not in inspect(alchemy_connection).get_table_names()
            alchemy_session.execute(text("UPDATE users SET name = 'changed'"))
            alchemy_session.commit()


        def test_the_seed_row_is_back(alchemy_session):
            names = alchemy_session.execute(text("SELECT name FROM users")).scalars().all()
            assert names == ["seed"]
        """
    )
    project.run("-p", "no:randomly").assert_outcomes(passed=3)


@postgresql_only
def test_the_clean_up_leaves_the_tests_connection_as_it_was(project: Project) -> None:
    """The clean-up runs on another connection (suspending triggers would empty the
    test's connection's cache of planned statements), and the next test gets the test's
    connection back: the same server process, its planned statements kept."""
    seeded(project)
    project.tests(
        """
        import pytest

        PIDS = []


        @pytest.mark.parametrize("turn", range(4))
        def test_writes(alchemy_session, alchemy_connection, turn):
            from models import User

            PIDS.append(alchemy_connection.exec_driver_sql("SELECT pg_backend_pid()").scalar())
            alchemy_session.add(User(name=f"user {turn}"))
            alchemy_session.commit()


        def test_one_connection_served_them_all():
            assert len(set(PIDS)) == 1, PIDS
        """
    )
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(passed=5)
