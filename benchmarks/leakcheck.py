"""What the leak check costs on a seeded database: pytest-alchemy against the hand-written recipe.

Usage::

    .venv/bin/python benchmarks/leakcheck.py [--tests 300] [--backend sqlite|postgresql|all]
        [--rounds 3] [--warmup 1] [--compare-with OTHER/src] [--keep DIR]

The project's test database starts with seed rows: 2,000 rows in three tables
(``customers``, ``orders``, ``events``) with columns of the types drivers decode
differently (``timestamptz``, ``jsonb``, ``numeric``, ``text[]``; on SQLite
``DateTime``, JSON and ``Numeric``). The plugin builds and seeds it in a
``pytest_alchemy_create_schema`` hook; the recipe does the same at the start of
its run. Every test adds one event, commits (a savepoint release) and counts the
events back. Scenarios:

* ``elsewhere`` (PostgreSQL): the test also commits a row on another database of
  the same server, as other runs, other projects and autovacuum do all the time.
  The probe after the test sees a committed transaction, so the plugin's
  comparison of the test database with its baseline runs after every test;
* ``quiet``: nothing commits anywhere, so only the probe runs.

Each scenario is one run in which three ways take turns test by test: the
plugin's ``alchemy_session`` (or ``alchemy_async_session``) with the leak check
on, the same with ``@pytest.mark.alchemy_db(leak_check="off")`` (the probe still
runs, the comparison does not), and the hand-written savepoint recipe, the 1.00x
reference. PostgreSQL through psycopg (sync) and asyncpg (one event loop for the
run, as ``async_savepoint.py``'s session loop), SQLite through pysqlite.

With ``--compare-with`` another version of the plugin runs the same projects in
the same rounds: its rows are tagged with its git commit, and tests it fails
(a leak reported where none happened) are counted in the ``failed`` column, the
median number of failed tests per run (of ``--tests``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from _harness import (
    SQLITE_FIX,
    Benchmark,
    Group,
    Target,
    Variant,
    interleaved_module,
    recipe_session,
)
from _harness import main as run

MODELS = '''\
"""A small shop whose test database starts with 2,000 seed rows, in types that
drivers decode differently: timestamptz, jsonb, numeric and text[] (JSON on SQLite)."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import JSON, DateTime, ForeignKey, Numeric, String, Text, insert
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DOCUMENT = JSON().with_variant(JSONB(), "postgresql")
TAGS = JSON().with_variant(ARRAY(Text()), "postgresql")
CUSTOMERS, ORDERS, EVENTS = 400, 600, 1000
START = datetime(2026, 1, 1, tzinfo=timezone.utc)


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    joined: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    profile: Mapped[dict] = mapped_column(DOCUMENT)
    tags: Mapped[list] = mapped_column(TAGS)


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    placed: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    total: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    lines: Mapped[dict] = mapped_column(DOCUMENT)


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(20))
    payload: Mapped[dict] = mapped_column(DOCUMENT)
    tags: Mapped[list] = mapped_column(TAGS)


def seed(connection):
    """The seed rows; ids are left to the database, so later inserts get fresh ones."""
    connection.execute(
        insert(Customer),
        [
            {
                "name": f"customer {n}",
                "joined": START + timedelta(days=n, seconds=n),
                "profile": {"n": n, "vip": n % 7 == 0, "address": {"city": f"city {n % 40}"}},
                "tags": [f"t{n % 5}", f"t{n % 11}"],
            }
            for n in range(CUSTOMERS)
        ],
    )
    connection.execute(
        insert(Order),
        [
            {
                "customer_id": n % CUSTOMERS + 1,
                "placed": START + timedelta(hours=n, microseconds=n),
                "total": Decimal(n * 37 % 100_000) / 100,
                "lines": {"items": [{"sku": f"sku-{n % 90}", "qty": n % 4 + 1}]},
            }
            for n in range(ORDERS)
        ],
    )
    connection.execute(
        insert(Event),
        [
            {
                "order_id": n % ORDERS + 1,
                "at": START + timedelta(minutes=n),
                "kind": ("placed", "paid", "shipped")[n % 3],
                "payload": {"n": n, "ratio": n / 7, "note": None},
                "tags": [f"e{n % 3}"],
            }
            for n in range(EVENTS)
        ],
    )
'''

SYNC_RECIPE = '''\
"""The hand-written recipe (one engine, schema and seed rows per run, a rolled-back
transaction per test); the plugin's schema hook; a connection to another database."""

import pytest
from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session

from models import Base, seed

URL = {url!r}
ELSEWHERE = {elsewhere!r}
{sqlite_fix}

def pytest_alchemy_create_schema(connection, database):
    Base.metadata.create_all(connection)
    seed(connection)
    return True


@pytest.fixture(scope="session")
def engine():
    engine = create_engine(URL)
    {install_fix}with engine.begin() as connection:
        Base.metadata.drop_all(connection)
        Base.metadata.create_all(connection)
        seed(connection)
    yield engine
    engine.dispose()


{recipe_session}{elsewhere_fixture}'''

ASYNC_RECIPE = '''\
"""The hand-written async recipe on one event loop for the run (a pooled engine, schema
and seed rows per run, a rolled-back transaction per test); the plugin's schema hook; a
connection to another database."""

import pytest
import pytest_asyncio
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from models import Base, seed

URL = {url!r}
ELSEWHERE = {elsewhere!r}


def pytest_alchemy_create_schema(connection, database):
    Base.metadata.create_all(connection)
    seed(connection)
    return True


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def engine():
    engine = create_async_engine(URL)
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.drop_all)
        await connection.run_sync(Base.metadata.create_all)
        await connection.run_sync(seed)
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def session(engine):
    connection = await engine.connect()
    await connection.begin()
    session = AsyncSession(bind=connection, join_transaction_mode="create_savepoint")
    yield session
    await session.close()
    await connection.rollback()
    await connection.close()
{elsewhere_fixture}'''

ELSEWHERE_FIXTURE = '''

@pytest.fixture(scope="session")
def elsewhere():
    """Commit a row on another database of the same server (autocommit)."""
    engine = create_engine(ELSEWHERE, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE IF NOT EXISTS ticks (id serial PRIMARY KEY, at timestamptz DEFAULT now())"
        )
        yield lambda: connection.exec_driver_sql("INSERT INTO ticks DEFAULT VALUES")
    engine.dispose()
'''

HEADER = """\
import pytest
from sqlalchemy import func, select

from models import EVENTS, START, Event
"""

ASYNC_MARK = 'pytestmark = pytest.mark.asyncio(loop_scope="session")\n'

SCENARIOS = {
    "elsewhere": "a commit on another database during each test: the comparison runs",
    "quiet": "no commit anywhere: the probe alone",
}

WAYS = (
    ("alchemy", "pytest-alchemy, leak check on"),
    ("nocheck", 'pytest-alchemy, leak_check="off"'),
    ("recipe", "hand-written savepoint recipe"),
)


def body(fixture: str, *, asynchronous: bool, elsewhere: bool, check: bool) -> str:
    """One test: add an event, commit, maybe commit elsewhere, count the events."""
    awaited = "await " if asynchronous else ""
    arguments = f"{fixture}, elsewhere" if elsewhere else fixture
    lines = [] if check else ['@pytest.mark.alchemy_db(leak_check="off")']
    lines += [
        f"{'async ' if asynchronous else ''}def NAME({arguments}):",
        f'    {fixture}.add(Event(order_id=1, at=START, kind="test", payload={{"n": 1}}, '
        'tags=["new"]))',
        f"    {awaited}{fixture}.commit()",
        *(["    elsewhere()"] if elsewhere else []),
        f"    assert {awaited}{fixture}.scalar(select(func.count()).select_from(Event)) "
        "== EVENTS + 1",
    ]
    return "\n".join(lines) + "\n"


def elsewhere_url(target: Target) -> str:
    """The other database, through psycopg whatever the target's driver."""
    url = target.recipe_url.replace(f"+{target.driver}", "+psycopg", 1)
    return url.replace("/postgres?", "/bench_elsewhere?")


def variants(target: Target, root: str, tests: int) -> list[Variant]:
    asynchronous = target.driver == "asyncpg"
    scenarios = ["quiet"] if target.name == "sqlite" else ["elsewhere", "quiet"]
    ini = {"alchemy_metadata": "models:Base", "alchemy_schema": "hook"}
    plugins = {"alchemy"}
    if target.plugin_url is not None:
        ini["alchemy_url"] = target.plugin_url
    if asynchronous:
        ini |= {"asyncio_mode": "strict", "asyncio_default_fixture_loop_scope": "function"}
        plugins.add("asyncio")
    found = []
    for scenario in scenarios:
        elsewhere = scenario == "elsewhere"
        if target.name == "sqlite":
            url = f"sqlite:///{root}/leakcheck_{scenario}.db"
        else:
            url = target.recipe_url.replace("/postgres?", f"/bench_{target.driver}_{scenario}?")
        conftest = (ASYNC_RECIPE if asynchronous else SYNC_RECIPE).format(
            url=url,
            elsewhere=elsewhere_url(target) if elsewhere else None,
            sqlite_fix=SQLITE_FIX if target.name == "sqlite" else "",
            recipe_session=recipe_session(),
            install_fix="_emit_begin_ourselves(engine)\n    " if target.name == "sqlite" else "",
            elsewhere_fixture=ELSEWHERE_FIXTURE if elsewhere else "",
        )
        plugin_fixture = "alchemy_async_session" if asynchronous else "alchemy_session"
        bodies = [
            (
                way,
                body(
                    "session" if way == "recipe" else plugin_fixture,
                    asynchronous=asynchronous,
                    elsewhere=elsewhere,
                    check=way != "nocheck",
                ),
            )
            for way, _ in WAYS
        ]
        header = HEADER + ("\n" + ASYNC_MARK if asynchronous else "")
        found.append(
            Variant(
                scenario,
                SCENARIOS[scenario],
                conftest,
                interleaved_module(header, bodies, tests),
                ini=ini,
                plugins=frozenset(plugins),
                models=MODELS,
                failures_allowed=True,
                groups=tuple(
                    Group(
                        way,
                        f"{scenario}: {label}",
                        baseline=None if way == "recipe" else f"{scenario}_recipe",
                    )
                    for way, label in WAYS
                ),
            )
        )
    return found


DRIVERS = ("psycopg", "asyncpg")

RECIPE_DATABASES = (
    "bench_elsewhere",
    *(f"bench_{driver}_{scenario}" for driver in DRIVERS for scenario in SCENARIOS),
)


def main(argv: Sequence[str] | None = None) -> int:
    return run(
        Benchmark(
            description=__doc__.split("\n\n")[0],
            sqlite_title="SQLite file (pysqlite)",
            postgresql_drivers=DRIVERS,
            recipe_databases=RECIPE_DATABASES,
            variants=variants,
            packages=("psycopg", "asyncpg", "pytest-asyncio", "pytest-alchemy"),
        ),
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
