"""The HTTP client. The database fixtures all come from pytest-alchemy."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest_asyncio
from library_lifespan.db import get_db
from library_lifespan.main import app


@pytest_asyncio.fixture
async def client(
    alchemy_async_override: Callable[[Any, Any], None],
) -> AsyncIterator[httpx.AsyncClient]:
    """A client that calls the app on the test's event loop, inside the test's transaction.

    ``get_db`` now yields sessions on the test's connection. ASGITransport does not
    run the lifespan, and it need not: the overriding dependency does not use the
    sessionmaker the lifespan would keep on ``app.state``.
    """
    alchemy_async_override(app, get_db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client
