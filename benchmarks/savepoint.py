"""What per-test isolation costs: pytest-alchemy against hand-written conftests (sync).

Usage::

    .venv/bin/python benchmarks/savepoint.py [--tests 300] [--backend sqlite|postgresql|all]
                                             [--rounds 3] [--warmup 1] [--keep DIR]

Generates one small project (``users``, ``teams``, ``memberships``) and N tiny
tests, each "insert 5 users, commit, count them back, expect 5" (the count and
the unique e-mail column also prove that every variant really isolates), written
five ways and run side by side:

(a) ``alchemy_session``: savepoint isolation, leak check on, pooled connection
    reset after each test (the plugin's defaults);
(b) the hand-written recipe: a session-scoped engine with ``create_all``, and
    per test a connection, an outer transaction and a Session joined with
    ``join_transaction_mode="create_savepoint"``, rolled back afterwards
    (on SQLite with SQLAlchemy's documented pysqlite fix, without which the
    recipe does not isolate at all); ``-p no:alchemy``;
(c) ``drop_all``/``create_all`` around every test, real commits; ``-p no:alchemy``;
(d) (a) with ``-o alchemy_leak_check=off``;
(e) (b) with a ``NullPool`` engine: a new connection per test;
(f) (b) with ``DISCARD ALL`` each time a connection goes back to the pool, the blunt
    reset of session state (PostgreSQL only);
(g) (a) and (b) in one run, taking turns test by test (``test_alchemy_<n>`` and
    ``test_recipe_<n>``), each row the mean of its own tests. Separate runs of (a)
    and (b) seconds apart differ by as much as the machine drifts in between (on a
    shared VM, more than the overhead being measured); in turns, both see the same
    machine. The plugin's hooks also run for the recipe's tests here, a few
    microseconds each, in the recipe's favour;
(-) empty tests without fixtures: pytest's own cost per test, for scale.

SQLite: the plugin's embedded default (a file under the project's pytest
cache directory) and a ``sqlite:///`` file in the project for the others.
PostgreSQL: psycopg over the unix socket of a throwaway server started with
``pytest_alchemy.servers.start_server`` (or ``--postgresql-url``).

The per-test time is the mean runtest-protocol time of the tests of a run
(first and last excluded), median over the rounds; see ``_harness.py`` for why
this beats subtracting an empty run. Columns: ``ms/test``; ``ratio`` against
the variant named in brackets (the recipe); ``p50`` the median test; ``setup``,
``call``, ``teardown`` the means of pytest's phase durations; ``1st test`` the
first test, which also pays for creating the database and its schema.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from _harness import (
    SQLITE_FIX,
    Benchmark,
    Target,
    Variant,
    paired_variant,
    recipe_session,
    test_module,
)
from _harness import main as run

TESTS_HEADER = """\
from sqlalchemy import func, select

from models import User
"""

TEST_BODY = """\
def NAME(FIXTURE):
    FIXTURE.add_all([User(name=f"user {n}", email=f"user{n}@example.com") for n in range(5)])
    FIXTURE.commit()
    assert FIXTURE.scalar(select(func.count()).select_from(User)) == 5
"""

SMALLEST_BODY = """\
def NAME(FIXTURE):
    FIXTURE.add(User(name="ada", email="ada@example.com"))
    FIXTURE.commit()
    assert FIXTURE.scalar(select(func.count()).select_from(User)) == 1
"""
"""The smallest realistic test (one insert, a commit, a count): where the per-test
overhead of the isolation is the largest share of a test."""

PLUGIN_CONFTEST = '''\
"""Nothing to write: pytest-alchemy provides alchemy_session (see pytest.ini)."""
'''

RECIPE_CONFTEST = '''\
"""The hand-written recipe: one engine and schema per run, a rolled-back transaction per test."""

import pytest
from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from models import Base

URL = {url!r}
ENGINE_OPTIONS = {options}
{sqlite_fix}{discard}

@pytest.fixture(scope="session")
def engine():
    engine = create_engine(URL, **ENGINE_OPTIONS)
    {install_fix}{install_discard}Base.metadata.create_all(engine)
    yield engine
    Base.metadata.drop_all(engine)
    engine.dispose()


{recipe_session}'''

DROP_ALL_CONFTEST = '''\
"""Schema per test: create every table before each test and drop them all after it."""

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from models import Base

URL = {url!r}


@pytest.fixture(scope="session")
def engine():
    engine = create_engine(URL)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def fresh_schema(engine):
    Base.metadata.create_all(engine)
    yield
    Base.metadata.drop_all(engine)


@pytest.fixture
def session(engine, fresh_schema):
    with Session(engine) as session:
        yield session
'''


DISCARD_ALL = """

def _discard_all_on_checkin(engine):
    # The blunt reset: DISCARD ALL whenever a connection goes back to the pool. It
    # cannot run inside a transaction block, so it runs in the driver's autocommit mode.
    @event.listens_for(engine, "checkin")
    def _discard(dbapi_connection, _record):
        dbapi_connection.autocommit = True
        dbapi_connection.execute("DISCARD ALL")
        dbapi_connection.autocommit = False
"""


def recipe_conftest(url: str, *, nullpool: bool, discard: bool = False) -> str:
    sqlite = url.startswith("sqlite")
    return RECIPE_CONFTEST.format(
        recipe_session=recipe_session(),
        url=url,
        options='{"poolclass": NullPool}' if nullpool else "{}",
        sqlite_fix=SQLITE_FIX if sqlite else "",
        install_fix="_emit_begin_ourselves(engine)\n    " if sqlite else "",
        discard=DISCARD_ALL if discard else "",
        install_discard="_discard_all_on_checkin(engine)\n    " if discard else "",
    )


def variants(target: Target, root: str, tests: int) -> list[Variant]:
    """The variants for ``target``; ``root`` is where the recipes keep SQLite files."""

    def module(fixture: str) -> str:
        return test_module(TESTS_HEADER, TEST_BODY.replace("FIXTURE", fixture), tests)

    def recipe_url(key: str) -> str:
        if target.name == "sqlite":
            return f"sqlite:///{root}/{key}.db"
        return target.recipe_url.replace("/postgres?", f"/bench_{key}?")

    plugin_ini = {"alchemy_metadata": "models:Base"}
    if target.plugin_url is not None:
        plugin_ini["alchemy_url"] = target.plugin_url
    plugin = frozenset({"alchemy"})
    return [
        Variant(
            "plugin",
            "(a) pytest-alchemy alchemy_session",
            PLUGIN_CONFTEST,
            module("alchemy_session"),
            ini=plugin_ini,
            plugins=plugin,
            baseline="recipe",
        ),
        Variant(
            "recipe",
            "(b) hand-written savepoint recipe",
            recipe_conftest(recipe_url("recipe"), nullpool=False),
            module("session"),
        ),
        Variant(
            "drop_all",
            "(c) drop_all/create_all per test",
            DROP_ALL_CONFTEST.format(url=recipe_url("drop_all")),
            module("session"),
            baseline="recipe",
            counted=False,
        ),
        Variant(
            "plugin_no_leak",
            "(d) pytest-alchemy, alchemy_leak_check=off",
            PLUGIN_CONFTEST,
            module("alchemy_session"),
            ini=plugin_ini,
            plugins=plugin,
            args=("-o", "alchemy_leak_check=off"),
            baseline="recipe",
        ),
        Variant(
            "recipe_nullpool",
            "(e) recipe, new connection per test (NullPool)",
            recipe_conftest(recipe_url("recipe_nullpool"), nullpool=True),
            module("session"),
            baseline="recipe",
        ),
        *(
            [
                Variant(
                    "recipe_discard",
                    "(f) recipe + DISCARD ALL at each check-in",
                    recipe_conftest(recipe_url("recipe_discard"), nullpool=False, discard=True),
                    module("session"),
                    baseline="recipe",
                )
            ]
            if target.name == "postgresql"
            else []
        ),
        paired_variant(
            "paired",
            (
                "(g) (a) and (b) taking turns in one run",
                "(g) in turns: pytest-alchemy",
                "(g) in turns: hand-written recipe",
            ),
            recipe_conftest(recipe_url("paired"), nullpool=False),
            TESTS_HEADER,
            TEST_BODY,
            ("alchemy_session", "session"),
            tests,
            ini=plugin_ini,
            plugins=plugin,
        ),
        paired_variant(
            "smallest",
            (
                "(h) smallest test (one insert, commit, count), in turns",
                "(h) smallest, in turns: pytest-alchemy",
                "(h) smallest, in turns: hand-written recipe",
            ),
            recipe_conftest(recipe_url("smallest"), nullpool=False),
            TESTS_HEADER,
            SMALLEST_BODY,
            ("alchemy_session", "session"),
            tests,
            ini=plugin_ini,
            plugins=plugin,
        ),
        Variant(
            "empty",
            "(-) empty tests, no fixtures (pytest alone)",
            '"""No fixtures: what pytest itself costs per test."""\n',
            test_module("", "def NAME():\n    pass\n", tests),
        ),
    ]


RECIPE_DATABASES = (
    "bench_recipe",
    "bench_drop_all",
    "bench_recipe_nullpool",
    "bench_recipe_discard",
    "bench_paired",
    "bench_smallest",
)


def main(argv: Sequence[str] | None = None) -> int:
    return run(
        Benchmark(
            description=__doc__.split("\n\n")[0],
            sqlite_title="SQLite file (pysqlite)",
            postgresql_drivers=("psycopg",),
            recipe_databases=RECIPE_DATABASES,
            variants=variants,
            packages=("psycopg", "pytest-alchemy"),
        ),
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
