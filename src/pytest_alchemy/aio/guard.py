"""The loop guard: every statement of an async test's connection runs on the test's loop.

A pooled async connection used from another event loop fails with "attached to
a different loop" (asyncpg is left unusable), "Event loop is closed", or hangs.
The guard turns a statement sent from another loop, or from a thread without
one, into :class:`LoopMismatchError` naming the fixture and both loop scopes,
before the driver sees it, and remembers the tasks that used the connection so
that the cycle can name those still running at teardown.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import LoopMismatchError, message

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

ANYIO = "anyio"
"""The route of tests anyio runs (every other route is a pytest-asyncio loop scope)."""


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
