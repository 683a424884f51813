"""Litestar 2's ``AsyncTestClient``, serving the app on the async test's own loop.

Litestar 2's ``AsyncTestClient`` runs the app (its lifespan and every request) on
the loop of a thread of its own, while the test's thread waits. An async test's
connection belongs to the test's loop (:mod:`pytest_alchemy.aio`), so the app
could not use it there: the loop guard refused the app's first statement. During
an async test, :func:`test_clients_on_this_loop` makes the client serve the app
where the test runs, as httpx's ``ASGITransport`` does (and as Litestar 3's
async-native client does): entering the client runs the app's lifespan on the
test's loop, each HTTP request calls the app there. Responses are built as
Litestar builds them (``response.template`` and ``response.context`` included).
Websocket sessions still run in their own thread.

A client entered before the test (a wider-scoped fixture) keeps its thread. Only
what this module changed is put back after the test.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from typing import Any

from ..errors import AlchemyError, message
from .base import saved_attributes


class LifespanFailed(AlchemyError, RuntimeError):
    """The app's lifespan failed at start-up, or ended before it said it had started."""


class Lifespan:
    """The ASGI lifespan protocol of ``app``, run as a task on the current loop."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        try:
            await self._app(scope, self._to_app.get, self._from_app.put)
        finally:
            self._from_app.put_nowait(None)

    async def _exchange(self, phase: str) -> None:
        await self._to_app.put({"type": f"lifespan.{phase}"})
        reply = await self._from_app.get()
        if reply is not None and reply["type"] == f"lifespan.{phase}.complete":
            return
        cause = await self._ended()
        said = f": {reply['message']}" if reply is not None and reply.get("message") else ""
        raise LifespanFailed(
            message(
                f"The app's lifespan {phase} failed{said}. AsyncTestClient ran it on the "
                "test's loop, as the app's requests run."
            )
        ) from cause

    async def _ended(self) -> BaseException | None:
        """Wait a moment for the app's lifespan to end after it failed; its exception."""
        task = self._task
        assert task is not None
        await asyncio.wait([task], timeout=1)
        if not task.done():
            task.cancel()
            await asyncio.wait([task])
        return None if task.cancelled() else task.exception()

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        await self._exchange("startup")

    async def stop(self) -> None:
        assert self._task is not None
        try:
            await self._exchange("shutdown")
        finally:
            await asyncio.wait([self._task])


async def _enter(client: Any) -> Any:
    """``AsyncTestClient.__aenter__`` on the current loop: the app's lifespan started here,
    and stopped by the client's own ``__aexit__`` (through its exit stack)."""
    from contextlib import AsyncExitStack

    lifespan = Lifespan(client.app)
    await lifespan.start()
    stack = AsyncExitStack()
    stack.push_async_callback(lifespan.stop)
    client.exit_stack = stack
    return client


async def _serve(transport: Any, request: Any) -> Any:
    """One HTTP request through the app, awaited on the current loop."""
    import anyio
    from httpx import ByteStream, Response

    scope = transport.parse_request(request=request)
    if scope["type"] == "websocket":
        return transport.handle_request(request=request)  # the session runs in its thread
    scope.update(
        method=request.method, http_version="1.1", extensions={"http.response.template": {}}
    )
    raw: dict[str, Any] = {"stream": BytesIO()}
    context: dict[str, Any] = {
        "response_complete": anyio.Event(),
        "request_complete": False,
        "raw_kwargs": raw,
        "response_started": False,
        "template": None,
        "context": None,
    }
    try:
        await transport.client.app(
            scope,
            transport.create_receive(request=request, context=context),
            transport.create_send(request=request, context=context),
        )
    except Exception:
        if transport.raise_server_exceptions:
            raise
        return Response(status_code=500, headers=[], stream=ByteStream(b""), request=request)
    if not context["response_started"]:
        if transport.raise_server_exceptions:
            raise AssertionError("TestClient did not receive any response.")
        return Response(status_code=500, headers=[], stream=ByteStream(b""), request=request)
    stream = ByteStream(raw.pop("stream").getvalue())
    response = Response(**raw, stream=stream, request=request)
    response.template = context["template"]  # type: ignore[attr-defined]
    response.context = context["context"]  # type: ignore[attr-defined]
    return response


def _runs_on_a_portal() -> bool:
    """Whether the Litestar imported is one whose AsyncTestClient runs the app in a thread
    (Litestar 2; Litestar 3's client is async-native)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("litestar").split(".")[0] == "2"
    except PackageNotFoundError:  # pragma: no cover - imported, so installed
        return False


@contextmanager
def test_clients_on_this_loop() -> Iterator[None]:
    """For the block (an async test): Litestar's ``AsyncTestClient`` entered or used
    without a thread of its own serves the app on the running loop."""
    testing = sys.modules.get("litestar.testing")
    if testing is None or not _runs_on_a_portal():
        yield
        return
    from litestar.testing.transport import TestClientTransport

    client_class = testing.AsyncTestClient
    transport_class = TestClientTransport
    original_request = transport_class.handle_async_request

    async def __aenter__(self: Any) -> Any:
        return await _enter(self)

    async def handle_async_request(self: Any, request: Any) -> Any:
        if hasattr(self.client, "blocking_portal"):  # entered before the block
            return await original_request(self, request)
        return await _serve(self, request)

    restore_client = saved_attributes(client_class, ["__aenter__"])
    restore_transport = saved_attributes(transport_class, ["handle_async_request"])
    client_class.__aenter__ = __aenter__
    transport_class.handle_async_request = handle_async_request  # type: ignore[method-assign]
    try:
        yield
    finally:
        restore_transport()
        restore_client()
