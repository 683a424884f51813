"""What per-test isolation costs in async tests: pytest-alchemy against a hand-written conftest.

Usage::

    .venv/bin/python benchmarks/async_savepoint.py [--tests 300]
        [--backend sqlite|postgresql|all] [--rounds 3] [--warmup 1] [--keep DIR]

The same project and tests as ``savepoint.py`` ("insert 5 users, commit, count
them back, expect 5"), async, run by pytest-asyncio in strict mode, for two
event loop scopes:

* ``function`` (pytest-asyncio's default, a new loop per test). A pooled
  connection cannot move to another loop, so both sides connect per test: the
  plugin serves these tests from an engine without pool, and the recipe uses a
  session-scoped ``NullPool`` engine (schema built with ``asyncio.run``).
* ``session`` (one loop for the run, tests marked
  ``@pytest.mark.asyncio(loop_scope="session")``). Both sides use a pooled
  engine that lives on the session loop.

The hand-written recipe: per test ``await engine.connect()``, ``await
connection.begin()`` and an ``AsyncSession`` joined with
``join_transaction_mode="create_savepoint"``, rolled back afterwards (on
aiosqlite with SQLAlchemy's documented fix for the driver's delayed BEGIN).

Backends: aiosqlite on a SQLite file (the plugin's embedded default, a
``sqlite+aiosqlite:///`` file for the recipe) and asyncpg over the unix socket
of a throwaway PostgreSQL server (or ``--postgresql-url``).

Timing and columns as in ``savepoint.py`` (see ``_harness.py``): ``ratio``
compares with the recipe of the same loop scope. The "in turns" rows run both
in one process, test by test in turns, as (g) in ``savepoint.py``. The last line per backend is
what a per-test event loop costs the plugin (function minus session scope).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from _harness import (
    SQLITE_FIX,
    Benchmark,
    Result,
    Target,
    Variant,
    paired_variant,
    test_module,
)
from _harness import main as run

TESTS_HEADER = """\
import pytest
from sqlalchemy import func, select

from models import User

pytestmark = MARK
"""

TEST_BODY = """\
async def NAME(FIXTURE):
    FIXTURE.add_all([User(name=f"user {n}", email=f"user{n}@example.com") for n in range(5)])
    await FIXTURE.commit()
    assert await FIXTURE.scalar(select(func.count()).select_from(User)) == 5
"""

MARKS = {
    "function": "pytest.mark.asyncio",
    "session": 'pytest.mark.asyncio(loop_scope="session")',
}

PLUGIN_CONFTEST = '''\
"""Nothing to write: pytest-alchemy provides alchemy_async_session (see pytest.ini)."""
'''

# A per-test loop: the engine is created outside any loop and pools nothing.
RECIPE_FUNCTION_LOOP = '''\
"""The hand-written recipe on per-test event loops: a new connection per test."""

import asyncio

import pytest
import pytest_asyncio
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from models import Base

URL = {url!r}
{sqlite_fix}

async def _run(engine, function):
    async with engine.begin() as connection:
        await connection.run_sync(function)


@pytest.fixture(scope="session")
def engine():
    engine = create_async_engine(URL, poolclass=NullPool)
    {install_fix}asyncio.run(_run(engine, Base.metadata.create_all))
    yield engine
    asyncio.run(_run(engine, Base.metadata.drop_all))


@pytest_asyncio.fixture
async def session(engine):
    connection = await engine.connect()
    await connection.begin()
    session = AsyncSession(bind=connection, join_transaction_mode="create_savepoint")
    yield session
    await session.close()
    await connection.rollback()
    await connection.close()
'''

RECIPE_SESSION_LOOP = '''\
"""The hand-written recipe on one event loop for the run: a pooled engine on that loop."""

import pytest_asyncio
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from models import Base

URL = {url!r}
{sqlite_fix}

@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def engine():
    engine = create_async_engine(URL)
    {install_fix}async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    yield engine
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.drop_all)
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
'''


def recipe_conftest(template: str, url: str) -> str:
    sqlite = url.startswith("sqlite")
    return template.format(
        url=url,
        sqlite_fix=SQLITE_FIX if sqlite else "",
        install_fix="_emit_begin_ourselves(engine.sync_engine)\n    " if sqlite else "",
    )


def variants(target: Target, root: str, tests: int) -> list[Variant]:
    def module(fixture: str, scope: str) -> str:
        header = TESTS_HEADER.replace("MARK", MARKS[scope])
        return test_module(header, TEST_BODY.replace("FIXTURE", fixture), tests)

    def recipe_url(key: str) -> str:
        if target.name == "sqlite":
            return f"sqlite+aiosqlite:///{root}/{key}.db"
        return target.recipe_url.replace("/postgres?", f"/bench_{key}?")

    asyncio_ini = {"asyncio_mode": "strict", "asyncio_default_fixture_loop_scope": "function"}
    plugin_ini = {**asyncio_ini, "alchemy_metadata": "models:Base"}
    if target.plugin_url is not None:
        plugin_ini["alchemy_url"] = target.plugin_url
    found = []
    for scope, template in (("function", RECIPE_FUNCTION_LOOP), ("session", RECIPE_SESSION_LOOP)):
        recipe = f"recipe_{scope}"
        found += [
            Variant(
                f"plugin_{scope}",
                f"pytest-alchemy alchemy_async_session, {scope} loop",
                PLUGIN_CONFTEST,
                module("alchemy_async_session", scope),
                ini=plugin_ini,
                plugins=frozenset({"alchemy", "asyncio"}),
                baseline=recipe,
            ),
            Variant(
                recipe,
                f"hand-written async recipe, {scope} loop",
                recipe_conftest(template, recipe_url(recipe)),
                module("session", scope),
                ini=asyncio_ini,
                plugins=frozenset({"asyncio"}),
            ),
            paired_variant(
                f"paired_{scope}",
                (
                    f"both in turns in one run, {scope} loop",
                    f"in turns, {scope} loop: pytest-alchemy",
                    f"in turns, {scope} loop: hand-written recipe",
                ),
                recipe_conftest(template, recipe_url(f"paired_{scope}")),
                TESTS_HEADER.replace("MARK", MARKS[scope]),
                TEST_BODY,
                ("alchemy_async_session", "session"),
                tests,
                ini=plugin_ini,
                plugins=frozenset({"alchemy", "asyncio"}),
            ),
        ]
    return found


def loop_cost(results: Sequence[Result]) -> str:
    by_key = {result.variant.key: result for result in results}
    lines = []
    for side in ("plugin", "recipe"):
        per_test = by_key[f"{side}_function"].median("mean")
        shared = by_key[f"{side}_session"].median("mean")
        lines.append(
            f"{side}: a per-test event loop (and connection) costs {per_test - shared:.2f} ms/test "
            f"over one loop for the run ({per_test:.2f} vs {shared:.2f})"
        )
    return "\n".join(lines)


RECIPE_DATABASES = (
    "bench_recipe_function",
    "bench_recipe_session",
    "bench_paired_function",
    "bench_paired_session",
)


def main(argv: Sequence[str] | None = None) -> int:
    return run(
        Benchmark(
            description=__doc__.split("\n\n")[0],
            sqlite_title="SQLite file (aiosqlite)",
            postgresql_drivers=("asyncpg",),
            recipe_databases=RECIPE_DATABASES,
            variants=variants,
            packages=("pytest-asyncio", "asyncpg", "aiosqlite", "pytest-alchemy"),
            after_table=loop_cost,
        ),
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
