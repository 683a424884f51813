"""Routing: which fixture opens an async test's connection on the test's own event loop.

The public async fixtures are plain sync fixtures. As one of them is set up, the
``pytest_fixture_setup`` hook calls :func:`open_on_loop`, which sets up the
internal fixture that runs on the test's loop (one per pytest-asyncio loop
scope, and one for anyio); that fixture publishes the test's
:class:`~pytest_alchemy.aio.cycle.AsyncTest` for :func:`claim` to hand out. A
test no loop fixture can serve is failed with what to change.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from ..context import Context
from ..errors import message
from ..reporting import reported
from ..selection import IMPLICIT, is_async_function
from ..urls import require_async_stack
from .guard import ANYIO

if TYPE_CHECKING:
    from .cycle import AsyncTest

LOOP_SCOPES = ("function", "class", "module", "package", "session")


def test_fixture_name(route: str) -> str:
    return f"_alchemy_async_test_{route}"


def engine_fixture_name(scope: str) -> str:
    return f"_alchemy_async_engine_{scope}"


PUBLIC_FIXTURES = frozenset(
    {
        "alchemy_async_connection",
        "alchemy_async_session",
        "alchemy_async_sessionmaker",
        "alchemy_async_engine",
        "alchemy_async_bind",
        "alchemy_async_override",
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
    """pytest-asyncio's mode; "" when it is not loaded (absent, or ``-p no:asyncio``)."""
    if not config.pluginmanager.hasplugin("asyncio"):
        return ""
    return str(config.getoption("asyncio_mode", None) or config.getini("asyncio_mode"))


def explain_unserved(item: pytest.Item, fixture: str) -> NoReturn:
    """Fail the test whose loop no async fixture can run on, saying what to change."""
    __tracebackhide__ = True
    with reported():
        require_async_stack(f"async fixtures ({fixture})")
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


def claim(context: Context, fixture: str) -> AsyncTest:
    """The test's AsyncTest, published by the loop fixture :func:`open_on_loop` set up,
    claimed by ``fixture`` (named in the loop guard's errors)."""
    __tracebackhide__ = True
    test = context.async_test
    if test is None:
        error, context.async_error = context.async_error, None
        if error is not None:
            raise error
        explain_unserved(context.item, fixture)
    return test.claim(fixture)
