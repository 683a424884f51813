"""The engine, made when the app starts, and the ``get_db`` dependency.

Nothing connects at import time: the lifespan handler reads ``DATABASE_URL``
and keeps the engine and its sessionmaker on ``app.state``; every request
gets its own session from there.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

DEFAULT_URL = "sqlite+aiosqlite:///./library.db"


def database_url() -> str:
    return os.environ.get("DATABASE_URL", DEFAULT_URL)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.engine = create_async_engine(database_url())
    app.state.sessionmaker = async_sessionmaker(app.state.engine, expire_on_commit=False)
    try:
        yield
    finally:
        await app.state.engine.dispose()


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, closed when the request (and its background tasks) is done."""
    async with request.app.state.sessionmaker() as session:
        yield session


async def create_tables() -> None:
    """Create the tables in the ``DATABASE_URL`` database (``python -m library_lifespan.db``)."""
    from .models import Base

    engine = create_async_engine(database_url())
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(create_tables())
