"""Admin access to a server, whatever driver the URL names.

Provisioning (create, record, drop) is written once, against a synchronous
SQLAlchemy ``Connection``. A URL whose driver is async-only
(``postgresql+asyncpg://``) still gets it: the sync twin driver when one is
installed, otherwise the async engine's ``run_sync`` on a private event loop
in a short-lived thread, so the test's own event loops are never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from ..urls import async_url, require_async_stack, sync_url

T = TypeVar("T")

ADMIN_PURPOSE = "the connections that create and drop the test database"


class Connector:
    """Runs plain functions on a connection to one URL (AUTOCOMMIT unless told otherwise)."""

    def __init__(
        self,
        url: URL,
        *,
        connect_args: Callable[[URL], dict[str, Any]] | None = None,
        autocommit: bool = True,
        persistent: bool = False,
    ) -> None:
        self._persistent = persistent and autocommit
        self._sync = sync_url(url, required=False, purpose=ADMIN_PURPOSE)
        if self._sync is None:
            # Checked now, so that a missing piece is one paragraph, not a traceback
            # from inside the private loop's thread.
            async_url(url, purpose=ADMIN_PURPOSE)
            require_async_stack(ADMIN_PURPOSE)
        self.url = self._sync or url
        self._options: dict[str, Any] = {
            "poolclass": NullPool,
            "connect_args": connect_args(self.url) if connect_args else {},
        }
        if autocommit:
            self._options["isolation_level"] = "AUTOCOMMIT"
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        """A heartbeat thread may use the connector too."""
        self._held: Connection | None = None

    def _sync_engine(self, url: URL) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = create_engine(url, **self._options)
            return self._engine

    def run(self, fn: Callable[[Connection], T]) -> T:
        """``fn(connection)``; on a connection of its own, or with ``persistent`` on the
        one kept open since the first call (opened again after it was lost)."""
        if self._sync is not None:
            held = self.hold() if self._persistent else None
            if held is None:
                with self._sync_engine(self._sync).connect() as connection:
                    return fn(connection)
            try:
                return fn(held)
            except DBAPIError as error:
                if error.connection_invalidated or held.invalidated:
                    self.release()
                raise
        return _on_private_loop(self.url, self._options, fn)

    def hold(self) -> Connection | None:
        """One connection kept open until :meth:`release`, for many small statements
        from one thread; None without a sync driver or when it cannot connect."""
        if self._held is None and self._sync is not None:
            try:
                self._held = self._sync_engine(self._sync).connect()
            except DBAPIError:
                return None
        return self._held

    def release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            with contextlib.suppress(DBAPIError):
                held.close()

    def close(self) -> None:
        self.release()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def _on_private_loop(url: URL, options: dict[str, Any], fn: Callable[[Connection], T]) -> T:
    from sqlalchemy.ext.asyncio import create_async_engine

    async def main() -> T:
        engine = create_async_engine(url, **options)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(fn)
        finally:
            await engine.dispose()

    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(main())
        except BaseException as error:  # re-raised in the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=target, name="pytest-alchemy-admin", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value
