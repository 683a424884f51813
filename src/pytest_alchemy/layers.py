"""``@pytest_alchemy.layer``: fixtures whose rows are seed data for every test of their scope.

::

    @pytest_alchemy.layer(scope="module")
    def catalogue(alchemy_session):
        alchemy_session.add_all([Product(name="tea"), Product(name="coffee")])
        alchemy_session.commit()

Rows such a fixture writes (through the ``alchemy_*`` session it asks for, or
through the app's own sessions and engines listed in ``alchemy_app_sessions``)
are seen by every test run while it is set up; each test is rolled back to the
layer, and the layer itself is rolled back when its scope ends. Layers nest
(session > package > module > class). ``async def`` fixtures make async layers,
on the pytest-asyncio event loop of their ``loop_scope``.

This module only declares the fixtures; the database work is in
``isolation/layers.py`` and ``isolation/cycle.py``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

from .errors import message
from .reporting import report_outcome, reported
from .selection import ASYNC_CONTEXT, SYNC_CONTEXT

if TYPE_CHECKING:
    from .blocker import Blocker
    from .context import Context, SyncContext
    from .isolation.cycle import Outcome
    from .isolation.layers import Layer

SCOPES = ("class", "module", "package", "session")
SYNC_FIXTURES = ("alchemy_connection", "alchemy_session", "alchemy_sessionmaker")
"""What a sync layer may ask for: made on the layer's connection."""
ASYNC_FIXTURES = ("alchemy_async_connection", "alchemy_async_session", "alchemy_async_sessionmaker")
"""What an async layer may ask for: made on the layer's connection, on its loop."""
BLOCKER = "alchemy_blocker"


def layer(
    function: Callable[..., Any] | None = None,
    *,
    scope: str = "module",
    loop_scope: str | None = None,
    name: str | None = None,
    autouse: bool = False,
) -> Any:
    """Declare a fixture of seed data: its rows are seen by every test of its scope.

    ``scope`` is ``"class"``, ``"module"`` (the default), ``"package"`` or ``"session"``.
    The fixture may ask for ``alchemy_session``, ``alchemy_connection`` and
    ``alchemy_sessionmaker`` (``alchemy_async_*`` in an ``async def`` fixture), which are
    then the layer's own, and for any other fixture of a scope at least as wide; the app's
    sessions listed in ``alchemy_app_sessions`` write into the layer while it runs. It may
    return a value or ``yield`` one (code after the ``yield`` runs inside the layer too,
    before it is rolled back). An async layer runs on the pytest-asyncio event loop of
    ``loop_scope`` (default: its ``scope``), and the tests of its scope must run on it.
    """

    def decorate(function: Callable[..., Any]) -> Any:
        return _declare(function, scope, loop_scope, name or function.__name__, autouse)

    if function is not None:
        return decorate(function)
    return decorate


def _declare(
    function: Callable[..., Any], scope: str, loop_scope: str | None, name: str, autouse: bool
) -> Any:
    shown = getattr(function, "__qualname__", name)
    if scope not in SCOPES:
        raise TypeError(
            message(
                f"@pytest_alchemy.layer(scope={scope!r}) on {shown}: a layer's scope is one of "
                f"{', '.join(SCOPES)}. A function-scoped fixture needs no layer: every "
                "alchemy_session of one test already shares the test's transaction."
            )
        )
    params = list(inspect.signature(function).parameters)
    if params[:1] == ["self"]:
        raise TypeError(
            message(
                f"@pytest_alchemy.layer on the method {shown}: define the layer at module level "
                "or in a conftest.py, and request it from the tests of the class."
            )
        )
    is_async = inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)
    own, other = (ASYNC_FIXTURES, SYNC_FIXTURES) if is_async else (SYNC_FIXTURES, ASYNC_FIXTURES)
    wrong = [param for param in params if param in other or param == "alchemy_async_engine"]
    if wrong:
        kind = "an async def" if is_async else "a plain def"
        raise TypeError(
            message(
                f"the layer {shown} is {kind} fixture but asks for {', '.join(wrong)}. "
                f"It can ask for {', '.join(own)}: they write into the layer."
            )
        )
    if is_async:
        return _async_fixture(function, scope, loop_scope or scope, name, autouse, params)
    if loop_scope is not None:
        raise TypeError(
            message(f"the layer {shown} is a plain def fixture: loop_scope is for async layers.")
        )
    return _sync_fixture(function, scope, name, autouse, params)


def _signature(names: list[str]) -> inspect.Signature:
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature([inspect.Parameter(each, kind) for each in names])


def _split(kwargs: dict[str, Any], own: tuple[str, ...]) -> tuple[dict[str, Any], list[str]]:
    """The user's fixtures, and the names of the layer's own ones it asked for."""
    wanted = [param for param in own if param in kwargs]
    return {key: value for key, value in kwargs.items() if key not in own}, wanted


@contextmanager
def _unblocked(blocker: Blocker) -> Iterator[None]:
    """The layer's set-up and teardown have the database, as a test has."""
    previous = blocker.enter(None)
    try:
        yield
    finally:
        blocker.enter(previous)


# -- sync layers ---------------------------------------------------------------------------


def _sync_fixture(
    function: Callable[..., Any], scope: str, name: str, autouse: bool, params: list[str]
) -> Any:
    def fixture(**kwargs: Any) -> Iterator[Any]:
        context: SyncContext = kwargs.pop(SYNC_CONTEXT)
        blocker: Blocker = kwargs.pop(BLOCKER)
        for param in SYNC_FIXTURES:
            if param in params:
                kwargs[param] = None
        yield from _run_sync(function, name, scope, context, blocker, kwargs)

    user = [param for param in params if param not in SYNC_FIXTURES]
    fixture.__signature__ = _signature([SYNC_CONTEXT, BLOCKER, *user])  # type: ignore[attr-defined]
    fixture.__doc__ = function.__doc__
    fixture.__module__ = function.__module__
    fixture.__qualname__ = getattr(function, "__qualname__", name)
    return pytest.fixture(fixture, scope=scope, name=name, autouse=autouse)  # type: ignore[call-overload]


def _run_sync(
    function: Callable[..., Any],
    name: str,
    scope: str,
    context: SyncContext,
    blocker: Blocker,
    kwargs: dict[str, Any],
) -> Iterator[Any]:
    from .isolation.layers import check_order, check_strategy

    run = context.run
    cycle = run.cycle
    user, wanted = _split(kwargs, SYNC_FIXTURES)
    with _unblocked(blocker):
        with reported():
            check_strategy(context.default, f"the layer {name}", name)
            check_order(cycle.state.layers, name, scope)
        opened, connection = _open_sync(context, name, scope)
        from sqlalchemy.orm import sessionmaker

        sessions = _Sessions(
            opened.connection,
            sessionmaker,
            {**context.default.session_options(), **context.session_options},
        )
        generator = None
        try:
            with _sync_bound(context, opened):
                result = function(**user, **sessions.values(wanted))
                if inspect.isgenerator(result):
                    generator = result
                    value = next(generator)
                else:
                    value = result
                # What the layer's sessions hold is part of the layer, committed or not.
                for session in sessions.made:
                    session.flush()
        except BaseException:
            _end_sync(cycle, opened, sessions.made, connection)
            raise
    try:
        yield value
    finally:
        with _unblocked(blocker):
            try:
                if generator is not None:
                    with _sync_bound(context, opened):
                        _finish_generator(generator, name)
            finally:
                outcome = _end_sync(cycle, opened, sessions.made, connection)
        _report(outcome, opened, run.settings.leak_check)


def _open_sync(context: SyncContext, name: str, scope: str) -> tuple[Layer, Any]:
    """Begin the layer: the outermost one on a new connection of the run's engine (also
    returned, for the caller to close), one inside another on its parent's."""
    cycle = context.run.cycle
    connection = None
    if cycle.state.layer is None:
        tracker = cycle.tracker(context.engine)
        tracker.own = True
        try:
            connection = context.engine.connect()
        finally:
            tracker.own = False
    try:
        with reported():
            opened = cycle.begin_layer(connection, name, scope)
    except BaseException:
        if connection is not None:
            connection.close()
        raise
    return opened, connection


def _finish_generator(generator: Iterator[Any], name: str) -> None:
    try:
        next(generator)
    except StopIteration:
        return
    pytest.fail(message(f"the layer {name} yielded twice: a fixture yields once."), pytrace=False)


def _end_sync(cycle: Any, opened: Layer, sessions: list[Any], connection: Any) -> Outcome:
    try:
        return cycle.end_layer(opened, sessions)  # type: ignore[no-any-return]
    finally:
        if connection is not None:
            connection.close()


@contextmanager
def _sync_bound(context: SyncContext, opened: Layer) -> Iterator[None]:
    run = context.run
    if not run.app_objects:
        yield
        return
    from .binding import Handle, bound

    options = context.default.session_options()
    handle = Handle(opened.connection, False, options, context.session_options)
    with bound(run.app_objects, handle):
        yield


class _Sessions:
    """The layer's own connection, sessionmaker and session, as its fixture asked for
    them (by the names of the plugin's fixtures); the sessions made, to flush and close."""

    connection_fixture = "alchemy_connection"
    maker_fixture = "alchemy_sessionmaker"

    def __init__(self, connection: Any, maker: Any, options: dict[str, Any]) -> None:
        self.connection = connection
        self.maker = maker
        self.options = options
        self.made: list[Any] = []

    def values(self, wanted: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for param in wanted:
            if param == self.connection_fixture:
                found[param] = self.connection
            elif param == self.maker_fixture:
                found[param] = self.maker(bind=self.connection, **self.options)
            else:
                session = self.maker(bind=self.connection, **self.options)()
                self.made.append(session)
                found[param] = session
        return found


class _AsyncSessions(_Sessions):
    """The same, for an async layer."""

    connection_fixture = "alchemy_async_connection"
    maker_fixture = "alchemy_async_sessionmaker"


def _report(outcome: Outcome, opened: Layer, leak_check: str) -> None:
    __tracebackhide__ = True
    report_outcome(outcome, opened.described, leak_check, "alchemy_engine")


# -- async layers --------------------------------------------------------------------------


def _async_fixture(
    function: Callable[..., Any],
    scope: str,
    loop_scope: str,
    name: str,
    autouse: bool,
    params: list[str],
) -> Any:
    try:
        pytest_asyncio = importlib.import_module("pytest_asyncio")
    except ImportError:
        raise TypeError(
            message(
                f"the layer {name} is an async def fixture, which needs pytest-asyncio: "
                "pip install 'pytest-alchemy[asyncio]'."
            )
        ) from None
    if SCOPES.index(loop_scope) < SCOPES.index(scope):
        raise TypeError(
            message(
                f"the {scope}-scoped layer {name} cannot run on the {loop_scope!r} event loop, "
                f"which ends before it: give it loop_scope={scope!r} or wider."
            )
        )
    from .aio.routing import engine_fixture_name

    engine_name = engine_fixture_name(loop_scope)

    async def fixture(**kwargs: Any) -> AsyncIterator[Any]:
        context: Context = kwargs.pop(ASYNC_CONTEXT)
        engine = kwargs.pop(engine_name)
        blocker: Blocker = kwargs.pop(BLOCKER)
        for param in ASYNC_FIXTURES:
            if param in params:
                kwargs[param] = None
        async for value in _run_async(
            function, name, scope, loop_scope, context, engine, blocker, kwargs
        ):
            yield value

    user = [param for param in params if param not in ASYNC_FIXTURES]
    fixture.__signature__ = _signature(  # type: ignore[attr-defined]
        [ASYNC_CONTEXT, engine_name, BLOCKER, *user]
    )
    fixture.__doc__ = function.__doc__
    fixture.__module__ = function.__module__
    fixture.__qualname__ = getattr(function, "__qualname__", name)
    return pytest_asyncio.fixture(
        fixture, scope=scope, loop_scope=loop_scope, name=name, autouse=autouse
    )


async def _run_async(
    function: Callable[..., Any],
    name: str,
    scope: str,
    loop_scope: str,
    context: Context,
    engine: Any,
    blocker: Blocker,
    kwargs: dict[str, Any],
) -> AsyncIterator[Any]:
    from .aio.guard import LoopGuard
    from .isolation.layers import check_order, check_strategy

    run = context.run
    cycle = run.cycle
    user, wanted = _split(kwargs, ASYNC_FIXTURES)
    loop = asyncio.get_running_loop()
    guard = LoopGuard(loop, f"the layer {name}", loop_scope, fixture=name)
    with _unblocked(blocker):
        with reported():
            check_strategy(context.default, f"the layer {name}", name)
            check_order(cycle.state.layers, name, scope)
        opened, connection = await _open_async(cycle, name, scope, loop_scope, engine, loop)
        from sqlalchemy.ext.asyncio import async_sessionmaker

        options = {
            "expire_on_commit": False,
            **context.default.session_options(),
            **context.async_session_options,
        }
        sessions = _AsyncSessions(opened.async_connection, async_sessionmaker, options)
        generator = None
        try:
            async with _async_bound(context, opened, guard):
                result = function(**user, **sessions.values(wanted))
                if inspect.isasyncgen(result):
                    generator = result
                    value = await generator.__anext__()
                else:
                    value = await result
                for session in sessions.made:
                    await session.flush()
        except BaseException:
            await _end_async(cycle, opened, sessions.made, connection)
            raise
    try:
        yield value
    finally:
        with _unblocked(blocker):
            try:
                if generator is not None:
                    async with _async_bound(context, opened, guard):
                        try:
                            await generator.__anext__()
                        except StopAsyncIteration:
                            pass
                        else:
                            pytest.fail(
                                message(f"the layer {name} yielded twice: a fixture yields once."),
                                pytrace=False,
                            )
            finally:
                outcome = await _end_async(cycle, opened, sessions.made, connection)
        _report(outcome, opened, run.settings.leak_check)


async def _open_async(
    cycle: Any, name: str, scope: str, loop_scope: str, engine: Any, loop: Any
) -> tuple[Layer, Any]:
    """Begin the layer: the outermost one on a new connection of the loop's engine (also
    returned, for the caller to close), one inside another on its parent's."""
    connection = None
    parent = cycle.state.layer
    if parent is None:
        tracker = cycle.tracker(engine.sync_engine)
        tracker.own = True
        try:
            connection = await engine.connect()
        finally:
            tracker.own = False
    runner = connection if connection is not None else parent.async_connection

    def begin(sync_connection: Any) -> Layer:
        return cycle.begin_layer(  # type: ignore[no-any-return]
            sync_connection if connection is not None else None,
            name,
            scope,
            is_async=True,
            async_connection=runner,
            engine=engine,
            loop=loop,
            loop_scope=loop_scope,
        )

    try:
        with reported():
            opened: Layer = await runner.run_sync(begin)
    except BaseException:
        if connection is not None:
            await connection.close()
        raise
    return opened, connection


async def _end_async(cycle: Any, opened: Layer, sessions: list[Any], connection: Any) -> Outcome:
    runner = opened.async_connection
    made = [session.sync_session for session in sessions]
    try:
        outcome: Outcome = await runner.run_sync(lambda _: cycle.end_layer(opened, made))
        return outcome
    finally:
        if connection is not None:
            await connection.close()


class _async_bound:
    """The app's async sessions bound to the layer's connection, and the loop guard set."""

    def __init__(self, context: Context, opened: Layer, guard: Any) -> None:
        self.context = context
        self.layer = opened
        self.guard = guard
        self.binding: Any = None

    async def __aenter__(self) -> None:
        from .aio.guard import GUARD

        self.layer.connection.info[GUARD] = self.guard
        objects = self.context.run.app_objects
        if objects:
            from .binding import Handle, bound

            handle = Handle(
                self.layer.async_connection,
                True,
                self.context.default.session_options(),
                {"expire_on_commit": False, **self.context.async_session_options},
            )
            self.binding = bound(objects, handle)
            self.binding.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        from .aio.guard import GUARD

        try:
            if self.binding is not None:
                from .binding import close_async

                await close_async(self.context.run.app_objects)
                self.binding.__exit__(None, None, None)
        finally:
            if not self.layer.connection.invalidated:
                self.layer.connection.info.pop(GUARD, None)
