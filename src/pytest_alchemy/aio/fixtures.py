"""The async fixtures: the four public ones, and the internal ones, one per event loop.

The public fixtures are plain sync fixtures that hand out what the loop fixture
of their test published (see ``routing``). The loop fixtures are made per
pytest-asyncio loop scope (declared with ``pytest_asyncio.fixture(loop_scope=S)``,
strict and auto mode alike) and one for anyio, and registered as a plugin at
start-up. For a loop wider than function the engine is pooled and lives exactly
as long as that loop; for a per-test loop the engine uses no pool (a connection
cannot outlive its loop), and the benchmark reports that cost.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from .. import markers
from ..app_fixtures import Override, binder_of, overrider_of
from ..context import Context
from ..reporting import report_outcome, reported
from .cycle import AsyncTest, async_cycle
from .guard import ANYIO, install_guard
from .routing import (
    LOOP_SCOPES,
    claim,
    engine_fixture_name,
    test_fixture_name,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import (
        AsyncConnection,
        AsyncEngine,
        AsyncSession,
        async_sessionmaker,
    )

T = TypeVar("T")


# -- public fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def alchemy_async_engine_options(alchemy_engine_options: dict[str, Any]) -> dict[str, Any]:
    """Extra keyword arguments for async engines: the sync ones minus what async rejects."""
    from ..engines import async_defaults

    return async_defaults(alchemy_engine_options)


@pytest.fixture
def alchemy_async_connection(_alchemy_context: Context) -> AsyncConnection:
    """The test's AsyncConnection, on the test's event loop, inside its isolation."""
    return claim(_alchemy_context, "alchemy_async_connection").connection


@pytest.fixture
def alchemy_async_sessionmaker(_alchemy_context: Context) -> async_sessionmaker[AsyncSession]:
    """An async_sessionmaker bound to the test's connection; its sessions may commit freely."""
    return claim(_alchemy_context, "alchemy_async_sessionmaker").sessionmaker


@pytest.fixture
def alchemy_async_session(_alchemy_context: Context) -> AsyncSession:
    """An AsyncSession on the test's connection, closed on the test's loop afterwards."""
    return claim(_alchemy_context, "alchemy_async_session").shared()


@pytest.fixture
def alchemy_async_engine(_alchemy_context: Context) -> AsyncEngine:
    """The async engine serving the test's event loop (pooled unless the loop is per test)."""
    return claim(_alchemy_context, "alchemy_async_engine").engine


@pytest.fixture
def alchemy_async_bind(_alchemy_context: Context) -> Callable[[T], T]:
    """``alchemy_async_bind(obj)``: ``alchemy_bind`` for async tests (an
    ``async_sessionmaker`` or ``AsyncEngine`` made at run time), on the test's loop."""
    bindings = claim(_alchemy_context, "alchemy_async_bind").bindings
    return binder_of(bindings, "alchemy_async_bind", "alchemy_bind")


@pytest.fixture
def alchemy_async_override(_alchemy_context: Context) -> Override:
    """``alchemy_async_override(app, get_db)``: ``alchemy_override`` for async tests and
    ``async def`` dependencies: requests made through
    ``httpx.AsyncClient(transport=ASGITransport(app))`` get sessions on the test's
    connection (``shared=True``: the test's own ``alchemy_async_session``)."""
    bindings = claim(_alchemy_context, "alchemy_async_override").bindings
    shared = _alchemy_context.run.settings.shares_sessions
    return overrider_of(bindings, "alchemy_async_override", "alchemy_override", shared=shared)


@pytest.fixture
def _alchemy_implicit(_alchemy_context: Context) -> None:
    """The async cycle for tests that need it implicitly (added to them at collection).

    Sync tests get ``_alchemy_sync_test`` itself; async ones the loop fixture
    chosen for them, and this fixture to name the reason in errors.
    """
    item = _alchemy_context.item
    marked = item.get_closest_marker(markers.NAME) is not None
    claim(_alchemy_context, "@pytest.mark.alchemy_db" if marked else "alchemy_database")


# -- internal fixtures, one per loop scope -------------------------------------------------


def _engine(context: Context, *, pooled: bool, database: str | None = None) -> AsyncEngine:
    """An async engine on the test database (or on ``database``, which a strategy
    acquired for a test), with the async twin of its URL's driver."""
    from ..engines import build_async_engine
    from ..urls import ASYNC_PURPOSE, async_url, require_async_stack

    run = context.run
    url = run.info.url if database is None else run.provisioner.test_url(database)
    with reported():
        require_async_stack(ASYNC_PURPOSE)
        engine = build_async_engine(
            async_url(url.set(drivername=run.info.url.drivername)),
            context.async_engine_options,
            run.provisioner,
            pooled=pooled,
            echo=run.settings.echo,
        )
    install_guard(engine.sync_engine)
    return engine


def _switched(context: Context, database: str) -> AsyncEngine:
    """The run's one engine without pool for databases a strategy acquired for single
    tests, pointed at ``database`` (see :class:`~pytest_alchemy.engines.DatabaseSwitch`)."""
    from ..engines import DatabaseSwitch

    if context.async_switch is None:
        engine = _engine(context, pooled=False, database=database)
        options = context.run.provisioner.engine_options(engine.url, context.async_engine_options)
        switch = DatabaseSwitch(engine.sync_engine, options.get("connect_args") or {})
        context.async_switch = (engine, switch)
    engine, switch = context.async_switch
    run = context.run
    url = run.provisioner.test_url(database).set(drivername=engine.url.drivername)
    switch.point(url)
    return engine


@pytest.fixture(scope="session")
def _alchemy_async_engine_unpooled(_alchemy_context: Context) -> Iterator[AsyncEngine]:
    """An engine without pool: one connection per test, for per-test event loops and anyio."""
    engine = _engine(_alchemy_context, pooled=False)
    yield engine
    engine.sync_engine.dispose(close=False)


def _pooled_engine_fixture() -> Callable[..., AsyncIterator[AsyncEngine]]:
    async def engine(_alchemy_context: Context) -> AsyncIterator[AsyncEngine]:
        pooled = _engine(_alchemy_context, pooled=True)
        try:
            yield pooled
        finally:
            await pooled.dispose()

    return engine


def _test_fixture(route: str, engine_name: str) -> Callable[..., AsyncIterator[AsyncTest]]:
    async def test(_alchemy_context: Context, **fixtures: Any) -> AsyncIterator[AsyncTest]:
        context = _alchemy_context

        def engine_for(database: str) -> AsyncEngine:
            return _switched(context, database)

        with reported():
            async with async_cycle(
                context, fixtures[engine_name], route, engine_for, fixtures["alchemy_isolation"]
            ) as started:
                context.async_test = started
                try:
                    yield started
                finally:
                    context.async_test = None
        assert started.outcome is not None
        report_outcome(
            started.outcome, context.item.nodeid, started.leak_check, "alchemy_async_engine"
        )

    # The engine must be a static dependency: a running async fixture cannot call
    # request.getfixturevalue() for another async fixture.
    test.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            for name in ("_alchemy_context", engine_name, "alchemy_isolation")
        ]
    )
    return test


def internal_fixtures(config: pytest.Config) -> ModuleType:
    """The per-loop fixtures, in a module object for registration as a plugin."""
    found: dict[str, Any] = {}
    plugins = config.pluginmanager
    if plugins.hasplugin("asyncio"):
        pytest_asyncio = importlib.import_module("pytest_asyncio")
        for scope in LOOP_SCOPES:
            engine_name = "_alchemy_async_engine_unpooled"
            if scope != "function":
                engine_name = engine_fixture_name(scope)
                found[engine_name] = pytest_asyncio.fixture(
                    _pooled_engine_fixture(), scope=scope, loop_scope=scope, name=engine_name
                )
            name = test_fixture_name(scope)
            found[name] = pytest_asyncio.fixture(
                _test_fixture(scope, engine_name), loop_scope=scope, name=name
            )
    if plugins.hasplugin("anyio"):
        name = test_fixture_name(ANYIO)
        found[name] = pytest.fixture(
            _test_fixture(ANYIO, "_alchemy_async_engine_unpooled"), name=name
        )
    module = ModuleType("pytest_alchemy.aio_loops", "Async fixtures, one per event loop.")
    for name, value in found.items():
        setattr(module, name, value)
    return module
