"""Choosing the isolation strategy: the ini default, the ``alchemy_isolation``
fixture (overridden in a conftest, for the tests under it), and the marker on a
test, class or module, in that order of precedence; and tests of every strategy
mixed in one run, in random order, each starting from the baseline.
"""

from __future__ import annotations

import pytest

from .helpers import Project, sqlite_only

SHUFFLED = """
import random


def pytest_collection_modifyitems(items):
    random.Random({seed}).shuffle(items)
"""


def test_the_fixture_overrides_the_ini_and_the_marker_overrides_the_fixture(
    project: Project,
) -> None:
    seed = project.seed("INSERT INTO users (name) VALUES ('seed')")
    project.ini(f"alchemy_isolation = savepoint\n{seed}")
    project.write(
        "committing/conftest.py",
        """
        import pytest


        @pytest.fixture
        def alchemy_isolation():
            return "truncate"
        """,
    )
    project.write(
        "committing/test_committing.py",
        """
        import pytest
        import sqlalchemy as sa
        from sqlalchemy import text


        def count_elsewhere(alchemy_connection):
            engine = sa.create_engine(alchemy_connection.engine.url, poolclass=sa.pool.NullPool)
            with engine.connect() as other:
                found = other.execute(text("SELECT count(*) FROM users")).scalar()
            engine.dispose()
            return found


        def test_commits_for_real(alchemy_session, alchemy_connection):
            alchemy_session.execute(text("INSERT INTO users (name) VALUES ('ada')"))
            alchemy_session.commit()
            assert count_elsewhere(alchemy_connection) == 2, "truncate: committed for real"


        @pytest.mark.alchemy_db(isolation="savepoint")
        def test_the_marker_wins(alchemy_session, alchemy_connection):
            alchemy_session.execute(text("INSERT INTO users (name) VALUES ('bob')"))
            alchemy_session.commit()
            assert count_elsewhere(alchemy_connection) == 1, "savepoint: never committed"
        """,
    )
    project.tests(
        """
        import sqlalchemy as sa
        from sqlalchemy import text


        def test_the_ini_default_elsewhere(alchemy_session, alchemy_connection):
            alchemy_session.execute(text("INSERT INTO users (name) VALUES ('cid')"))
            alchemy_session.commit()
            engine = sa.create_engine(alchemy_connection.engine.url, poolclass=sa.pool.NullPool)
            with engine.connect() as other:
                assert other.execute(text("SELECT count(*) FROM users")).scalar() == 1
            engine.dispose()
        """
    )
    result = project.run("-p", "no:randomly", "--alchemy-keep-db")
    result.assert_outcomes(passed=3)
    assert "0 leaks" in result.stdout.str()
    assert project.sql("SELECT name FROM users") == [("seed",)]


@sqlite_only
def test_a_fixture_naming_no_strategy_is_an_error_naming_the_choices(project: Project) -> None:
    project.write(
        "conftest.py",
        """
        import pytest


        @pytest.fixture
        def alchemy_isolation():
            return "truncated"
        """,
    )
    project.tests("def test_db(alchemy_session):\n    pass\n")
    result = project.run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*the alchemy_isolation fixture returned 'truncated', which names no isolation "
            "strategy. Return one of savepoint, truncate, recreate, clone, none*"
        ]
    )


MIXED = """
import threading

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select, text

from models import User, Vendor


def count(session, model):
    return session.scalar(select(func.count()).select_from(model))


def own_write(alchemy_connection, statement):
    engine = sa.create_engine(alchemy_connection.engine.url, poolclass=sa.pool.NullPool)
    with engine.begin() as other:
        other.execute(text(statement))
    engine.dispose()


def starts_from_the_baseline(isolation, session, connection):
    assert session.scalars(select(User.name)).all() == ["seed"]
    assert count(session, Vendor) == 0
    session.add(User(name=isolation))
    session.commit()
    if isolation != "savepoint":
        # Code with a connection of its own, and a thread.
        own_write(connection, "INSERT INTO vendors (name) VALUES ('own')")
        thread = threading.Thread(
            target=own_write, args=(connection, "INSERT INTO vendors (name) VALUES ('thread')")
        )
        thread.start()
        thread.join()
        assert count(session, Vendor) == 2
    if isolation in ("recreate", "clone"):
        connection.execute(text("ALTER TABLE users ADD COLUMN extra integer"))
        connection.commit()
"""

ONE_STRATEGY = """

@pytest.mark.alchemy_db(isolation="{name}")
@pytest.mark.parametrize("turn", range(3))
def test_{name}(alchemy_session, alchemy_connection, turn):
    starts_from_the_baseline("{name}", alchemy_session, alchemy_connection)
"""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_strategy_in_one_run_in_random_order(project: Project, seed: int) -> None:
    strategies = ["savepoint", "truncate", "recreate"]
    if project.backend == "postgresql":
        strategies.append("clone")
    project.ini(project.seed("INSERT INTO users (name) VALUES ('seed')"))
    project.write("conftest.py", SHUFFLED.format(seed=seed))
    project.tests(MIXED + "".join(ONE_STRATEGY.format(name=name) for name in strategies))
    result = project.run("-p", "no:randomly", "--alchemy-keep-db")
    result.assert_outcomes(passed=3 * len(strategies))
    assert "0 leaks" in result.stdout.str()
    # Out of band: the seed row alone, the original columns, no table left written.
    assert project.sql("SELECT name FROM users") == [("seed",)]
    assert project.sql("SELECT count(*) FROM vendors") == [(0,)]
    columns = project.sql(
        "SELECT count(*) FROM pragma_table_info('users')"
        if project.backend == "sqlite"
        else "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users'"
    )
    assert columns == [(2,)]
