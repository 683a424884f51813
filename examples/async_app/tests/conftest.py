"""The HTTP client. The database fixtures all come from pytest-alchemy."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from async_app.main import app
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import AsyncConnection


@pytest_asyncio.fixture
async def client(alchemy_async_connection: AsyncConnection) -> AsyncIterator[AsyncClient]:
    """A client that calls the app in the test's own event loop and transaction.

    Asking for ``alchemy_async_connection`` is what binds the app's
    ``SessionLocal`` to the test's connection, so even a test that only makes
    requests writes nothing that outlives it.
    """
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
        yield client
