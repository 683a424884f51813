"""One async test's cycle, on the test's own event loop, over the shared per-test cycle.

The connection is opened, isolated, ended and closed on the running loop; the
isolation itself is :class:`~pytest_alchemy.isolation.cycle.Cycle`, run through
``AsyncConnection.run_sync``, so sync and async tests follow the same rules.

It raises the plugin's own errors and leaves what ending the test found on
:attr:`AsyncTest.outcome`: the fixtures report both, as the sync ones do.

Tasks the test started that still use the connection at teardown are named in
the test's error and cancelled, and the connection is closed instead of rolled
back next to them, so neither the tasks nor a lock they held reach the next
test. An end that takes longer than ``lock_timeout`` closes the connection too.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import message
from .guard import GUARD, LoopGuard

if TYPE_CHECKING:
    # Imported when a test first needs the database, not when pytest starts.
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.ext.asyncio import (
        AsyncConnection,
        AsyncEngine,
        AsyncSession,
        async_sessionmaker,
    )

    from .. import binding
    from ..context import Context
    from ..engines import CheckoutTracker
    from ..isolation.base import Strategy
    from ..isolation.cycle import Cycle, Hold, Outcome
    from ..isolation.layers import Layer


@dataclass
class AsyncTest:
    """One async test's connection, transaction and sessionmaker."""

    __test__ = False

    connection: AsyncConnection
    sessionmaker: async_sessionmaker[AsyncSession]
    engine: AsyncEngine
    guard: LoopGuard
    leak_check: str
    sessions: list[AsyncSession] = field(default_factory=list)
    outcome: Outcome | None = None
    """What ending the test found, once it has ended."""
    shared_session: AsyncSession | None = None
    bindings: binding.Bindings | None = None
    """What the test bound while it ran (``alchemy_async_bind``, ``alchemy_async_override``)."""

    def claim(self, fixture: str) -> AsyncTest:
        self.guard.fixture = fixture
        return self

    def session(self) -> AsyncSession:
        session = self.sessionmaker()
        self.sessions.append(session)
        return session

    def shared(self) -> AsyncSession:
        """The test's session: ``alchemy_async_session``, and what factories bound to the
        test write through."""
        if self.shared_session is None:
            self.shared_session = self.session()
        return self.shared_session


@asynccontextmanager
async def async_cycle(
    context: Context,
    engine: AsyncEngine,
    route: str,
    engine_for: Callable[[str], AsyncEngine],
    isolation: object = None,
) -> AsyncIterator[AsyncTest]:
    """Open the test's connection on the running loop, isolate it, and end it there.

    ``engine`` is the loop's engine on the run's database; ``engine_for(name)`` makes
    one without pool on a database the strategy acquired for the test; ``isolation``
    is the ``alchemy_isolation`` fixture's value for the test.
    """
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from .. import binding

    run = context.run
    cycle = run.cycle
    started = time.perf_counter()
    item = context.item
    nodeid = item.nodeid
    strategy, leak_check = context.choose(item, isolation)
    guard = LoopGuard(asyncio.get_running_loop(), nodeid, route)
    layer = cycle.state.layer
    if layer is not None:
        engine, connection, hold = await _in_layer(
            cycle, layer, strategy, leak_check, started, guard, nodeid, route
        )
        database = None
    else:
        run_engine = engine.sync_engine
        engine, connection, database, tracker = await _connect(cycle, strategy, engine, engine_for)
        # On failure, begin closes the connection and gives the database back itself.
        hold = await connection.run_sync(
            _begin, cycle, strategy, leak_check, tracker, started, guard, database, run_engine
        )
    # From here on the test is ended exactly once, whatever fails before it runs.
    test: AsyncTest | None = None
    try:
        # AsyncSession cannot load expired attributes implicitly: keep them after commit
        # unless the project says otherwise (SQLAlchemy's advice for asyncio).
        options = {
            "expire_on_commit": False,
            **strategy.session_options(),
            **context.async_session_options,
        }
        maker = async_sessionmaker(bind=connection, **options)
        test = AsyncTest(connection, maker, engine, guard, leak_check)
        objects = run.app_objects
        handle = binding.Handle(
            connection, True, strategy.session_options(), options, shared_session=test.shared
        )
        with (
            run.on_database(hold.database),
            binding.bound(objects, handle),
            binding.Bindings(handle, binding.BINDERS, run.requirements_met) as test.bindings,
            binding.test_clients_on_this_loop(),
        ):
            try:
                yield test
            finally:
                await binding.close_async([*objects, *test.bindings.objects])
    finally:
        hold.ended = time.perf_counter()
        try:
            outcome = await _end(cycle, hold, connection, test, run.settings.lock_timeout)
        finally:
            if layer is None and not connection.closed:
                await connection.close()
            if database is not None:
                await engine.dispose()
                cycle.release(hold)
    if test is not None:
        test.outcome = outcome


async def _in_layer(
    cycle: Cycle,
    layer: Layer,
    strategy: Strategy,
    leak_check: str,
    started: float,
    guard: LoopGuard,
    nodeid: str,
    route: str,
) -> tuple[AsyncEngine, AsyncConnection, Hold]:
    """The test inside ``layer``: on its connection, which must be on the test's loop."""
    from ..isolation.layers import check_kind, wrong_loop

    check_kind(layer, nodeid, is_async=True)
    if layer.loop is not guard.loop:
        raise wrong_loop(layer, nodeid, route)
    engine: AsyncEngine = layer.engine
    connection: AsyncConnection = layer.async_connection
    tracker = cycle.tracker(engine.sync_engine)

    def begin(_: Connection) -> Hold:
        return cycle.begin_in_layer(
            layer,
            strategy,
            leak_check,
            nodeid,
            tracker=tracker,
            started=started,
            tags={GUARD: guard},
        )

    hold = await connection.run_sync(begin)
    return engine, connection, hold


async def _connect(
    cycle: Cycle,
    strategy: Strategy,
    engine: AsyncEngine,
    engine_for: Callable[[str], AsyncEngine],
) -> tuple[AsyncEngine, AsyncConnection, str | None, CheckoutTracker]:
    """The test's connection: on the loop's ``engine``, or on a database the strategy
    acquired for it (through ``engine_for``, given back if connecting fails)."""
    database = cycle.acquire(strategy, engine.sync_engine)
    if database is not None:
        engine = engine_for(database)
    tracker = cycle.tracker(engine.sync_engine)
    tracker.own = True
    try:
        connection = await engine.connect()
    except BaseException:
        if database is not None:
            await engine.dispose()
            cycle.give_back(strategy, engine.sync_engine, database)
        raise
    finally:
        tracker.own = False
    return engine, connection, database, tracker


def _begin(
    connection: Connection,
    cycle: Cycle,
    strategy: Strategy,
    leak_check: str,
    tracker: CheckoutTracker,
    started: float,
    guard: LoopGuard,
    database: str | None,
    run_engine: Engine,
) -> Hold:
    return cycle.begin(
        connection,
        strategy,
        leak_check,
        tracker=tracker,
        started=started,
        tags={GUARD: guard},
        database=database,
        run_engine=run_engine,
    )


async def _end(
    cycle: Cycle,
    hold: Hold,
    connection: AsyncConnection,
    test: AsyncTest | None,
    timeout: float,
) -> Outcome:
    """End the test on its loop; when that is not safe, close the connection instead."""
    guard: LoopGuard = hold.tags[GUARD]
    nodeid = guard.nodeid
    left = guard.still_running()
    if left:
        problem = _left_running(nodeid, left)
        await _cancel(left, timeout)
        del left
        await connection.invalidate()
        if cycle.state.checks.collect_after_cancel:
            # sqlite3 closes a connection whose statements are still referenced (here
            # by the cancelled tasks' tracebacks) only when they are freed: until then
            # it keeps its transaction and the database file locked for the next test.
            gc.collect()
        return cycle.abandon(hold, problem)
    sessions = test.sessions if test is not None else []
    sync_sessions = [session.sync_session for session in sessions]
    try:
        outcome: Outcome = await asyncio.wait_for(
            connection.run_sync(lambda _: cycle.finish(hold, sync_sessions)), timeout=timeout
        )
    except asyncio.TimeoutError:  # the builtin TimeoutError only from Python 3.11 on
        await connection.invalidate()
        for session in sessions:
            await session.close()
        return cycle.abandon(hold, _too_slow(nodeid, timeout))
    return outcome


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
