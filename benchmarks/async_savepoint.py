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
compares with the recipe of the same loop scope. The last line per backend is
what a per-test event loop costs the plugin (function minus session scope).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from contextlib import ExitStack

from _harness import (
    SQLITE_FIX,
    BenchmarkError,
    Result,
    Target,
    Variant,
    create_databases,
    freeze_plugin,
    load_summary,
    machine,
    parser,
    postgresql,
    run_all,
    table,
    test_module,
    url_text,
    versions,
    workspace,
)

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


RECIPE_DATABASES = ("bench_recipe_function", "bench_recipe_session")


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser(__doc__.split("\n\n")[0]).parse_args(argv)
    backends = ("sqlite", "postgresql") if arguments.backend == "all" else (arguments.backend,)
    targets: list[tuple[Target, list[Variant]]] = []
    with workspace(arguments.keep) as root, ExitStack() as stack:
        try:
            plugin, described = freeze_plugin(root, arguments.plugin_source)
        except BenchmarkError as error:
            print(error, file=sys.stderr)
            return 1
        data = root / "data"
        data.mkdir(exist_ok=True)
        if "sqlite" in backends:
            sqlite = Target("sqlite", "SQLite file (aiosqlite)", "", None)
            targets.append((sqlite, variants(sqlite, str(data), arguments.tests)))
        if "postgresql" in backends:
            maintenance, version = stack.enter_context(postgresql(arguments.postgresql_url))
            create_databases(maintenance, RECIPE_DATABASES)
            url = maintenance.set(drivername="postgresql+asyncpg")
            pg = Target(
                "postgresql",
                f"PostgreSQL {version} (asyncpg, unix socket)",
                url_text(url),
                url_text(url.set(database="bench_plugin")),
            )
            targets.append((pg, variants(pg, str(data), arguments.tests)))
        print(f"{arguments.tests} tests per run, {arguments.rounds} rounds, in {root}")
        try:
            results = run_all(
                root,
                targets,
                tests=arguments.tests,
                rounds=arguments.rounds,
                warmup=arguments.warmup,
                plugin=plugin,
                instructions=arguments.instructions,
            )
        except BenchmarkError as error:
            print(f"\n{error}", file=sys.stderr)
            return 1
    print()
    print(machine())
    print(versions(("pytest-asyncio", "asyncpg", "aiosqlite", "pytest-alchemy")))
    print(described)
    print(f"1-minute load average before the runs: {load_summary()}")
    print(f"{arguments.tests} tests per run; median over {arguments.rounds} rounds; ms")
    for target, _ in targets:
        print()
        print(table(target, results[target.name]))
        print()
        print(loop_cost(results[target.name]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
