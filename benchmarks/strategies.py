"""What each isolation strategy costs per test, against the hand-written versions.

Usage::

    .venv/bin/python benchmarks/strategies.py [--tests 100] [--backend sqlite|postgresql|all]
                                              [--rounds 3] [--warmup 1] [--keep DIR]

Generates a 30-table schema (``users``, ``teams``, ``memberships`` and 27 other
tables, some referencing others) and tests that each write 3 tables (a user, a
team, a membership), commit, and count the users back, expecting 1 (which also
proves that every way really isolates). All ways take turns, test by test, in
one pytest run, each reported as its own row, so all of them see the same
machine:

(a) the hand-written savepoint recipe (session-scoped engine, a connection, an
    outer transaction and a ``create_savepoint`` Session per test, rolled back):
    the 1.00x reference;
(b) ``alchemy_session`` under ``savepoint``, the plugin's default;
(c) ``alchemy_session`` under ``truncate``: the test commits for real, and only
    the tables it wrote are emptied afterwards;
(d) the hand-written truncate (seeds 002 and 003): the test commits for real,
    then every table is emptied (PostgreSQL: one ``TRUNCATE`` of all 30 tables
    ``RESTART IDENTITY CASCADE``; SQLite: ``DELETE FROM`` each and the
    ``sqlite_sequence`` reset);
(e) the hand-written recreate (seed 000): ``create_all`` before and
    ``drop_all`` after every test;
(f) ``alchemy_session`` under ``recreate``: every table dropped and created
    again after the test;
(g) ``alchemy_session`` under ``clone`` (PostgreSQL): a database of its own per
    test, from the pool of copies made ahead;
(h) the hand-written clone (pytest-postgresql's way): ``CREATE DATABASE …
    TEMPLATE`` before and ``DROP DATABASE`` after every test (PostgreSQL).

(a), (c) and (d), and on PostgreSQL (g) and (h), also run back to back, each in a
run of its own (``in a row``): there no other way's work shares the server (the DDL
of the recreate ways empties every server process's cache of planned statements on
its database), and no other test gives the clone pool time to copy ahead.

The targets: (c) costs at most 2x (a), and each strategy of the plugin is
faster than its hand-written counterpart ((c) against (d), (f) against (e),
(g) against (h)).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from _harness import (
    MODELS,
    SQLITE_FIX,
    Benchmark,
    Group,
    Target,
    Variant,
    interleaved_module,
    recipe_session,
    test_module,
)
from _harness import main as run

TABLES = 30
"""Tables in the schema: the three every test writes, and filler."""

FILLER = """

class Filler{n:02d}(Base):
    __tablename__ = "filler_{n:02d}"

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(50), index=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("{parent}.id"))
"""


def models() -> str:
    fillers = [
        FILLER.format(n=n, parent="users" if n % 3 == 0 else f"filler_{n - 1:02d}")
        for n in range(1, TABLES - 2)
    ]
    # The first filler has no filler before it.
    fillers[0] = fillers[0].replace("filler_00", "teams")
    return MODELS + "".join(fillers)


HEADER = """\
import pytest
from sqlalchemy import func, select

from models import Membership, Team, User
"""

BODY = """\
DECORATOR
def NAME(FIXTURE):
    user, team = User(name="ada", email="ada@example.com"), Team(name="core")
    FIXTURE.add_all([user, team])
    FIXTURE.flush()
    FIXTURE.add(Membership(user_id=user.id, team_id=team.id))
    FIXTURE.commit()
    assert FIXTURE.scalar(select(func.count()).select_from(User)) == 1
"""

CONFTEST = '''\
"""The hand-written ways, each on a database of its own."""

import pytest
from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from models import Base

URLS = {urls!r}
SQLITE = URLS["recipe"].startswith("sqlite")
{sqlite_fix}

def _engine(key):
    engine = create_engine(URLS[key])
    if SQLITE:
        _emit_begin_ourselves(engine)
    return engine


@pytest.fixture(scope="session")
def recipe_engine():
    engine = _engine("recipe")
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


{recipe_session}

@pytest.fixture(scope="session")
def truncate_engine():
    engine = _engine("truncate_all")
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def truncate_all_session(truncate_engine):
    with Session(truncate_engine) as session:
        yield session
    tables = Base.metadata.sorted_tables
    with truncate_engine.begin() as connection:
        if SQLITE:
            for table in reversed(tables):
                connection.exec_driver_sql(f"DELETE FROM {{table.name}}")
            if connection.exec_driver_sql(
                "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'"
            ).first():
                connection.exec_driver_sql("DELETE FROM sqlite_sequence")
        else:
            listed = ", ".join(table.name for table in tables)
            connection.exec_driver_sql(f"TRUNCATE {{listed}} RESTART IDENTITY CASCADE")


@pytest.fixture(scope="session")
def recreate_engine():
    engine = _engine("recreate")
    Base.metadata.drop_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def recreate_session(recreate_engine):
    Base.metadata.create_all(recreate_engine)
    with Session(recreate_engine) as session:
        yield session
    Base.metadata.drop_all(recreate_engine)


@pytest.fixture(scope="session")
def clone_admin():
    if SQLITE:
        pytest.skip("CREATE DATABASE ... TEMPLATE is PostgreSQL's")
    template = create_engine(URLS["clone_template"])
    Base.metadata.drop_all(template)
    Base.metadata.create_all(template)
    template.dispose()
    admin = create_engine(URLS["admin"], isolation_level="AUTOCOMMIT")
    yield admin
    admin.dispose()


@pytest.fixture
def clone_each_session(clone_admin, request):
    name = "bench_clone_" + request.node.name.rsplit("_", 1)[-1]
    with clone_admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {{name}} TEMPLATE bench_clone_template")
    engine = create_engine(URLS["clone_template"].replace("bench_clone_template", name),
                           poolclass=NullPool)
    with Session(engine) as session:
        yield session
    engine.dispose()
    with clone_admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE {{name}}")
'''

WAYS = (
    ("recipe", "(a) hand-written savepoint recipe", "recipe_session", ""),
    ("savepoint", "(b) pytest-alchemy savepoint", "alchemy_session", ""),
    (
        "truncate",
        "(c) pytest-alchemy truncate (the tables written)",
        "alchemy_session",
        '@pytest.mark.alchemy_db(isolation="truncate")',
    ),
    ("truncate_all", "(d) hand-written TRUNCATE of every table", "truncate_all_session", ""),
    ("recreate", "(e) hand-written drop_all/create_all", "recreate_session", ""),
    (
        "recreate_plugin",
        "(f) pytest-alchemy recreate",
        "alchemy_session",
        '@pytest.mark.alchemy_db(isolation="recreate")',
    ),
)
CLONE_WAYS = (
    (
        "clone",
        "(g) pytest-alchemy clone (pool of copies)",
        "alchemy_session",
        '@pytest.mark.alchemy_db(isolation="clone")',
    ),
    ("clone_each", "(h) hand-written CREATE DATABASE TEMPLATE", "clone_each_session", ""),
)
"""The ways only PostgreSQL can do."""


def variants(target: Target, root: str, tests: int) -> list[Variant]:
    def url(key: str) -> str:
        if target.name == "sqlite":
            return f"sqlite:///{root}/strategies_{key}.db"
        return target.recipe_url.replace("/postgres?", f"/bench_{key}?")

    urls = {key: url(key) for key in ("recipe", "truncate_all", "recreate", "clone_template")}
    urls["admin"] = target.recipe_url
    ini = {"alchemy_metadata": "models:Base"}
    if target.plugin_url is not None:
        ini["alchemy_url"] = target.plugin_url
    ways = WAYS + (CLONE_WAYS if target.name == "postgresql" else ())

    def body(fixture: str, decorator: str) -> str:
        return BODY.replace("DECORATOR\n", f"{decorator}\n" if decorator else "").replace(
            "FIXTURE", fixture
        )

    bodies = [(key, body(fixture, decorator)) for key, _, fixture, decorator in ways]
    conftest = CONFTEST.format(
        urls=urls,
        sqlite_fix=SQLITE_FIX,
        recipe_session=recipe_session("recipe_session", "recipe_engine"),
    )
    found = [
        Variant(
            "ways",
            "all ways in turns",
            conftest,
            interleaved_module(HEADER, bodies, tests),
            ini=ini,
            plugins=frozenset({"alchemy"}),
            models=models(),
            groups=tuple(
                # Every way against the hand-written savepoint recipe, the first.
                Group(key, label, baseline=None if key == "recipe" else "ways_recipe")
                for key, label, _, _ in ways
            ),
        )
    ]
    # Back to back, each way in a run of its own: no other way's work on the server
    # (recreate's DDL empties every server process's cache of planned statements on
    # the database) and no other test between two of its own.
    rows = [(way, "row_recipe") for way in WAYS if way[0] in ("recipe", "truncate", "truncate_all")]
    if target.name == "postgresql":
        rows += [(way, "row_clone_each") for way in CLONE_WAYS]
    for (key, label, fixture, decorator), baseline in rows:
        found.append(
            Variant(
                f"row_{key}",
                f"{label}, in a row",
                conftest,
                test_module(HEADER, body(fixture, decorator), tests),
                ini=ini,
                plugins=frozenset({"alchemy"}),
                models=models(),
                baseline=None if baseline == f"row_{key}" else baseline,
            )
        )
    return found


def main(argv: Sequence[str] | None = None) -> int:
    return run(
        Benchmark(
            description=__doc__.split("\n\n")[0],
            sqlite_title="SQLite file (pysqlite)",
            postgresql_drivers=("psycopg",),
            recipe_databases=(
                "bench_recipe",
                "bench_truncate_all",
                "bench_recreate",
                "bench_clone_template",
            ),
            variants=variants,
            packages=("psycopg", "pytest-alchemy"),
        ),
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
