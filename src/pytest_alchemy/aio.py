"""Async fixtures: every connection opened, used and closed on the test's own event loop.

**The failure this prevents.** A pooled async connection opened on one event
loop and used on another fails with "attached to a different loop" (asyncpg
is left unusable), "Event loop is closed", or hangs. Hand-written conftests hit
it whenever a fixture's loop scope differs from the test's, and pytest-asyncio
strict mode silently ignores plain ``async def`` fixtures.

**The design.** The public async fixtures (``alchemy_async_session``...) are
plain sync fixtures. As one of them is set up, the plugin's
``pytest_fixture_setup`` hook looks at the test and sets up the internal
fixture that runs on the test's loop, which publishes the test's connection
for the public fixtures to hand out:

* a pytest-asyncio test with loop scope ``S`` (its ``asyncio`` marker, else
  ``asyncio_default_test_loop_scope``) gets ``_alchemy_async_test_S``,
  declared with ``pytest_asyncio.fixture(loop_scope=S)``, strict and auto mode
  alike. For ``S`` wider than function its engine is pooled and lives exactly
  as long as that loop; for a per-test loop the engine uses no pool (a
  connection cannot outlive its loop), and the benchmark reports that cost.
* an anyio test (``anyio`` marker or ``anyio_backend`` fixture, asyncio
  backend) gets a plain async fixture, which anyio runs on the test's own
  loop; trio is refused, SQLAlchemy's async layer is asyncio-only.

A **loop guard** on every connection turns a statement sent from another loop
(or from a thread without one) into :class:`LoopMismatchError` naming the
fixture and both loop scopes, before the driver sees it. Tasks the test
started that still use the connection at teardown are named in the test's
error and cancelled, and the connection is closed instead of rolled back next
to them, so neither the tasks nor a lock they held reach the next test.

The isolation itself is the sync code of ``isolation.cycle``, run through
``AsyncConnection.run_sync``: sync and async tests follow the same rules.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import inspect
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from .errors import ConfigurationError, LoopMismatchError, message
from .fixtures import IMPLICIT, Context, report_outcome, reported

if TYPE_CHECKING:
    # Imported when a test first needs the database, not when pytest starts.
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.ext.asyncio import (
        AsyncConnection,
        AsyncEngine,
        AsyncSession,
        async_sessionmaker,
    )
    from sqlalchemy.orm import Session

    from . import binding
    from .isolation.cycle import Outcome
    from .runtime import Run

LOOP_SCOPES = ("function", "class", "module", "package", "session")
ANYIO = "anyio"


def test_fixture_name(route: str) -> str:
    return f"_alchemy_async_test_{route}"


def engine_fixture_name(scope: str) -> str:
    return f"_alchemy_async_engine_{scope}"


# -- the loop guard -------------------------------------------------------------------


@dataclass(eq=False)
class LoopGuard:
    """A connection listener: every statement, commit and rollback must run on ``loop``."""

    loop: asyncio.AbstractEventLoop
    nodeid: str
    route: str
    fixture: str = "alchemy_async_connection"
    tasks: weakref.WeakSet[asyncio.Task[Any]] = field(default_factory=weakref.WeakSet)

    def __call__(self, *_: Any, **__: Any) -> None:
        __tracebackhide__ = True
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            raise LoopMismatchError(self._explain("a thread with no running event loop")) from None
        if running is not self.loop:
            raise LoopMismatchError(self._explain("a different event loop"))
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)

    def _explain(self, used_from: str) -> str:
        if self.route == ANYIO:
            runs_on = "anyio's event loop"
            advice = "Use it only from the test and from async fixtures anyio runs."
        else:
            runs_on = f"the pytest-asyncio loop of scope {self.route!r}"
            advice = (
                "A fixture that uses it probably runs on a loop of another scope: give that "
                f"fixture loop_scope={self.route!r} (or set asyncio_default_fixture_loop_scope "
                f"= {self.route})."
            )
        return message(
            f"{self.fixture} of {self.nodeid} belongs to {runs_on}, but was used from "
            f"{used_from}. {advice} Code that runs the app in its own thread (Starlette's "
            "TestClient) cannot share it: use httpx.AsyncClient with ASGITransport instead."
        )

    def still_running(self) -> list[asyncio.Task[Any]]:
        current = asyncio.current_task()
        return [task for task in self.tasks if task is not current and not task.done()]


GUARD = "alchemy_loop_guard"
"""Key, in the driver connection's ``info``, of the loop guard of the test using it."""

GUARDED_EVENTS = ("do_execute", "do_executemany", "do_execute_no_params")
"""Dialect events: every statement, just before the driver gets it.

Dialect events cost nothing per connection; engine events (``before_execute``...)
would make SQLAlchemy build an event dispatcher for every connection of every test.
"""


def _guarded(*args: Any) -> None:
    """Dialect listener: run the guard of the test holding this connection, if any."""
    __tracebackhide__ = True
    context = args[-1]  # every GUARDED_EVENTS listener gets the execution context last
    try:
        guard = context.root_connection.info.get(GUARD)
    except Exception:  # an invalidated connection: nothing reaches the driver anyway
        return
    if guard is not None:
        guard()


def install_guard(engine: Engine) -> None:
    """Check, for every statement of ``engine``, the loop guard of the test using it."""
    from sqlalchemy import event

    for name in GUARDED_EVENTS:
        event.listen(engine, name, _guarded)


# -- one async test ------------------------------------------------------------------


@dataclass
class AsyncTest:
    """One async test's connection, transaction and sessionmaker."""

    __test__ = False

    connection: AsyncConnection
    sessionmaker: async_sessionmaker[AsyncSession]
    engine: AsyncEngine
    guard: LoopGuard
    sessions: list[AsyncSession] = field(default_factory=list)

    def claim(self, fixture: str) -> AsyncTest:
        self.guard.fixture = fixture
        return self

    def session(self) -> AsyncSession:
        session = self.sessionmaker()
        self.sessions.append(session)
        return session


def require_async_stack(fixture: str) -> None:
    try:
        importlib.import_module("greenlet")
        importlib.import_module("sqlalchemy.ext.asyncio")
    except ImportError:
        raise ConfigurationError(
            message(
                f"{fixture} needs greenlet, which SQLAlchemy's asyncio layer runs on. Install "
                "pytest-alchemy[asyncio] (or sqlalchemy[asyncio])."
            )
        ) from None


@asynccontextmanager
async def async_cycle(
    context: Context, engine: AsyncEngine, route: str
) -> AsyncIterator[AsyncTest]:
    """Open the test's connection on the running loop, isolate it, and end it there."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from . import binding

    run = context.run
    stats = run.stats
    started = time.perf_counter()
    item = context.item
    nodeid = item.nodeid
    with reported():
        strategy, leak_check = context.choose(item)
    guard = LoopGuard(asyncio.get_running_loop(), nodeid, route)
    connection, transaction = await _connect(run, engine, strategy, guard)
    tracker = run.tracker(engine.sync_engine)
    # AsyncSession cannot load expired attributes implicitly: keep them after commit
    # unless the project says otherwise (SQLAlchemy's advice for asyncio).
    options = {
        "expire_on_commit": False,
        **strategy.session_options(),
        **context.async_session_options,
    }
    maker = async_sessionmaker(bind=connection, **options)
    test = AsyncTest(connection, maker, engine, guard)
    stats.tests += 1
    stats.setup_seconds += time.perf_counter() - started
    factories = run.app_factories
    with binding.bound(factories, connection, is_async=True, options=strategy.session_options()):
        try:
            yield test
        finally:
            await _remove_scoped(factories)
    ended = time.perf_counter()
    try:
        outcome, problem = await _end(test, run, strategy, transaction, leak_check)
    finally:
        if not connection.closed:
            await connection.close()
        stats.teardown_seconds += time.perf_counter() - ended
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    assert outcome is not None
    outcome.unreturned = tracker.leaked()
    tracker.forget()
    stats.leaks += bool(outcome.leaks)
    stats.resets += bool(outcome.reset)
    report_outcome(outcome, nodeid, leak_check, "alchemy_async_engine")


async def _connect(
    run: Run, engine: AsyncEngine, strategy: Any, guard: LoopGuard
) -> tuple[AsyncConnection, Any]:
    """A connection of ``engine`` on the running loop, guarded and inside the test's isolation."""
    tracker = run.tracker(engine.sync_engine)
    tracker.own = True
    try:
        connection = await engine.connect()
    finally:
        tracker.own = False
    try:
        transaction = await connection.run_sync(_open, run, strategy, guard)
    except BaseException:
        await connection.invalidate()
        await connection.close()
        raise
    return connection, transaction


async def _end(
    test: AsyncTest, run: Run, strategy: Any, transaction: Any, leak_check: str
) -> tuple[Outcome | None, str | None]:
    """End the test on its loop; when that is not safe, close the connection instead."""
    connection = test.connection
    nodeid = test.guard.nodeid
    left = test.guard.still_running()
    if left:
        problem = _left_running(nodeid, left)
        await _cancel(left, run.settings.lock_timeout)
        del left
        await connection.invalidate()
        if run.backend.name == "sqlite":
            # sqlite3 closes a connection whose statements are still referenced (here
            # by the cancelled tasks' tracebacks) only when they are freed: until then
            # it keeps its transaction and the database file locked for the next test.
            gc.collect()
        return None, problem
    timeout = run.settings.lock_timeout
    sessions = [session.sync_session for session in test.sessions]
    try:
        outcome = await asyncio.wait_for(
            connection.run_sync(_close, transaction, run, strategy, leak_check, sessions),
            timeout=timeout,
        )
    except asyncio.TimeoutError:  # the builtin TimeoutError only from Python 3.11 on
        await connection.invalidate()
        for session in test.sessions:
            await session.close()
        return None, _too_slow(nodeid, timeout)
    return outcome, None


async def _cancel(tasks: list[asyncio.Task[Any]], timeout: float) -> None:
    """Cancel the tasks a test left running and wait for them, retrieving their outcome.

    Otherwise they go on running on a wider loop into later tests, and asyncio
    logs their errors ("Task exception was never retrieved") wherever they end.
    """
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks, timeout=timeout)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()


def _open(connection: Connection, run: Run, strategy: Any, guard: LoopGuard) -> Any:
    from .isolation.cycle import open_test

    connection.info[GUARD] = guard
    return open_test(connection, run.state, strategy)


def _close(
    connection: Connection,
    transaction: Any,
    run: Run,
    strategy: Any,
    leak_check: str,
    sessions: list[Session],
) -> Outcome:
    """End the test, then close its sessions and its connection: one pass on the loop."""
    from .isolation.cycle import close_test

    outcome = close_test(transaction, run.state, strategy, leak_check=leak_check, sessions=sessions)
    if not connection.invalidated:
        connection.info.pop(GUARD, None)
    connection.close()
    return outcome


async def _remove_scoped(factories: list[binding.AppFactory]) -> None:
    for item in factories:
        if item.is_async and item.scoped is not None:
            await item.scoped.remove()


def _left_running(nodeid: str, tasks: list[asyncio.Task[Any]]) -> str:
    names = ", ".join(sorted(_task_name(task) for task in tasks))
    return message(
        f"{nodeid} left {len(tasks)} task(s) running that use its database connection: {names}. "
        "A connection serves one operation at a time, so instead of rolling back next to them "
        "pytest-alchemy cancelled them and closed the connection (the database rolled the "
        "test's work back). "
        "Await or cancel such tasks before the test ends."
    )


def _too_slow(nodeid: str, timeout: float) -> str:
    return message(
        f"ending {nodeid}'s transaction took longer than alchemy_lock_timeout ({timeout:g} s), "
        "so pytest-alchemy closed the connection instead (the database rolled the test's work "
        "back). Usually a task the test left running holds the connection; await or cancel "
        "such tasks before the test ends."
    )


def _task_name(task: asyncio.Task[Any]) -> str:
    coroutine = task.get_coro()
    return str(getattr(coroutine, "__qualname__", None) or task.get_name())


# -- routing ---------------------------------------------------------------------------

PUBLIC_FIXTURES = frozenset(
    {
        "alchemy_async_connection",
        "alchemy_async_session",
        "alchemy_async_sessionmaker",
        "alchemy_async_engine",
    }
)


def _asyncio_runs(item: pytest.Item) -> bool:
    if not item.config.pluginmanager.hasplugin("asyncio"):
        return False
    module = importlib.import_module("pytest_asyncio")
    return bool(module.is_async_test(item))


def _anyio_runs(item: pytest.Item) -> bool:
    if not item.config.pluginmanager.hasplugin("anyio"):
        return False
    return item.get_closest_marker("anyio") is not None or (
        "anyio_backend" in getattr(item, "fixturenames", ())
    )


def is_async_function(item: pytest.Item) -> bool:
    function = getattr(item, "obj", None)
    return inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)


def loop_scope(item: pytest.Item) -> str:
    """The loop a pytest-asyncio test runs on: its marker, else the ini default."""
    marker = item.get_closest_marker("asyncio")
    scope = None
    if marker is not None:
        scope = marker.kwargs.get("loop_scope") or marker.kwargs.get("scope")
    return str(scope or item.config.getini("asyncio_default_test_loop_scope") or "function")


def route_of(item: pytest.Item) -> str | None:
    """Which internal fixture runs on this test's loop (a loop scope, or anyio); None if none."""
    if not is_async_function(item):
        return None
    anyio = _anyio_runs(item)
    if _asyncio_runs(item) and not (anyio and item.get_closest_marker("anyio")):
        return loop_scope(item)
    if anyio and _asyncio_mode(item.config) != "auto":
        return ANYIO
    return None


ROUTED = PUBLIC_FIXTURES | {IMPLICIT}
"""Fixtures that serve the AsyncTest the loop fixture of their test publishes."""


def open_on_loop(request: pytest.FixtureRequest) -> None:
    """Set up the fixture that opens the test's connection on the test's event loop.

    Called (from the ``pytest_fixture_setup`` hook) as one of :data:`ROUTED` is
    set up, with its request: the public fixtures themselves need no
    ``request``, which pytest builds anew for every fixture asking for it, a
    noticeable share of a test's set-up. A test no loop fixture can serve gets
    none; the public fixture then says why.
    """
    context: Context = request.getfixturevalue("_alchemy_context")
    if context.async_test is not None:
        return
    # A hook that raises would leave pytest's record of the public fixture half set
    # up: the fixture raises what happened instead.
    try:
        route = route_of(request.node)
        if route == ANYIO:
            check_anyio_backend(request.node, request.getfixturevalue("anyio_backend"))
        if route is not None:
            request.getfixturevalue(test_fixture_name(route))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:
        context.async_error = error


def _asyncio_mode(config: pytest.Config) -> str:
    return str(config.getoption("asyncio_mode", None) or config.getini("asyncio_mode"))


def explain_unserved(item: pytest.Item, fixture: str) -> NoReturn:
    """Fail the test whose loop no async fixture can run on, saying what to change."""
    __tracebackhide__ = True
    with reported():
        require_async_stack(fixture)
    nodeid = item.nodeid
    if not is_async_function(item):
        reason = (
            f"{fixture} needs an async test, but {nodeid} is a plain def: its connection is "
            "opened on the event loop the test runs on. Make the test async def and mark it "
            "@pytest.mark.asyncio (pytest-alchemy[asyncio]) or @pytest.mark.anyio, or use "
            "alchemy_session."
        )
    elif _anyio_runs(item):
        reason = (
            f"{nodeid} is an anyio test, but pytest-asyncio runs in auto mode and would run "
            "this test's async fixtures on its own event loop. Set asyncio_mode = strict, or "
            "mark the test @pytest.mark.asyncio instead."
        )
    else:
        reason = (
            f"{fixture} needs an async test runner, but no plugin runs {nodeid}. Mark it "
            "@pytest.mark.asyncio (pip install 'pytest-alchemy[asyncio]') or "
            "@pytest.mark.anyio, or set asyncio_mode = auto."
        )
    pytest.fail(message(reason), pytrace=False)


def check_anyio_backend(item: pytest.Item, backend: Any) -> None:
    name = backend if isinstance(backend, str) else backend[0]
    if name != "asyncio":
        pytest.fail(
            message(
                f"{item.nodeid} runs on the anyio backend {name!r}, but SQLAlchemy's asyncio "
                "layer runs only on asyncio. Override the anyio_backend fixture to return "
                "'asyncio' for database tests."
            ),
            pytrace=False,
        )


def dispatch(context: Context, fixture: str) -> AsyncTest:
    """The test's AsyncTest, published by the loop fixture :func:`open_on_loop` set up."""
    __tracebackhide__ = True
    test = context.async_test
    if test is None:
        error, context.async_error = context.async_error, None
        if error is not None:
            raise error
        explain_unserved(context.item, fixture)
    return test.claim(fixture)


# -- public fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def alchemy_async_engine_options(alchemy_engine_options: dict[str, Any]) -> dict[str, Any]:
    """Extra keyword arguments for async engines: the sync ones minus what async rejects."""
    from .engines import async_defaults

    return async_defaults(alchemy_engine_options)


@pytest.fixture
def alchemy_async_connection(_alchemy_context: Context) -> AsyncConnection:
    """The test's AsyncConnection, on the test's event loop, inside its isolation."""
    return dispatch(_alchemy_context, "alchemy_async_connection").connection


@pytest.fixture
def alchemy_async_sessionmaker(_alchemy_context: Context) -> async_sessionmaker[AsyncSession]:
    """An async_sessionmaker bound to the test's connection; its sessions may commit freely."""
    return dispatch(_alchemy_context, "alchemy_async_sessionmaker").sessionmaker


@pytest.fixture
def alchemy_async_session(_alchemy_context: Context) -> AsyncSession:
    """An AsyncSession on the test's connection, closed on the test's loop afterwards."""
    return dispatch(_alchemy_context, "alchemy_async_session").session()


@pytest.fixture
def alchemy_async_engine(_alchemy_context: Context) -> AsyncEngine:
    """The async engine serving the test's event loop (pooled unless the loop is per test)."""
    return dispatch(_alchemy_context, "alchemy_async_engine").engine


# -- internal fixtures, one per loop scope -------------------------------------------------


def _engine(context: Context, *, pooled: bool) -> AsyncEngine:
    """An async engine on the test database, with the async twin of its URL's driver."""
    from .engines import build_async_engine
    from .urls import async_url

    run = context.run
    with reported():
        require_async_stack("alchemy_async_session")
        engine = build_async_engine(
            async_url(run.info.url),
            context.async_engine_options,
            run.backend,
            pooled=pooled,
            echo=run.settings.echo,
        )
    install_guard(engine.sync_engine)
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
        async with async_cycle(context, fixtures[engine_name], route) as started:
            context.async_test = started
            try:
                yield started
            finally:
                context.async_test = None

    # The engine must be a static dependency: a running async fixture cannot call
    # request.getfixturevalue() for another async fixture.
    test.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            for name in ("_alchemy_context", engine_name)
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
