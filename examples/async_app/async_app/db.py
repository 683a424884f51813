"""The async engine, the session factory and the ``get_session`` dependency.

The database comes from the ``DATABASE_URL`` environment variable (a local
SQLite file through aiosqlite by default). Every request gets its own session
from ``SessionLocal``; tests never touch this engine, because pytest-alchemy
binds ``SessionLocal`` to each test's connection (``alchemy_app_sessions`` in
``pyproject.toml``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///./app.db")

engine = create_async_engine(DATABASE_URL)
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)


async def get_session() -> AsyncIterator[AsyncSession]:
    """One session per request, closed when the request is done."""
    async with SessionLocal() as session:
        yield session


async def create_tables() -> None:
    """Create the tables in the ``DATABASE_URL`` database (``python -m async_app.db``)."""
    from .models import Base

    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(create_tables())
    print(f"tables created in {engine.url.render_as_string(hide_password=True)}")
