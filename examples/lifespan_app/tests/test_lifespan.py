"""The app as it starts for real: its lifespan handler makes the engine and the
sessionmaker, and the test binds that sessionmaker to its own connection.

The engine points at ``DATABASE_URL``, which need not exist: bound, it is never
asked to connect, and everything written through it is the test's, undone after it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from library_lifespan.main import app
from library_lifespan.models import Author, Book
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

Bind = Callable[[Any], Any]


async def test_the_lifespan_sessionmaker_writes_into_the_test(
    alchemy_async_bind: Bind, alchemy_async_session: AsyncSession
) -> None:
    async with app.router.lifespan_context(app):
        maker = alchemy_async_bind(app.state.sessionmaker)
        assert maker is app.state.sessionmaker
        async with maker() as session:
            session.add(Author(name="Ursula K. Le Guin"))
            await session.commit()

        names = await alchemy_async_session.scalars(select(Author.name))
        assert names.all() == ["Ursula K. Le Guin"]


async def test_requests_through_the_started_app(
    alchemy_async_bind: Bind, alchemy_async_session: AsyncSession
) -> None:
    # No dependency override: get_db takes its sessions from app.state, as in production.
    async with app.router.lifespan_context(app):
        alchemy_async_bind(app.state.sessionmaker)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            author = (await client.post("/authors", json={"name": "Ted Chiang"})).json()
            response = await client.post(
                "/books",
                json={"isbn": "978-1101972120", "title": "Stories", "author_id": author["id"]},
            )
            borrowed = await client.post(
                f"/books/{response.json()['id']}/loans", json={"member": "ada"}
            )

    assert response.status_code == 201
    assert borrowed.status_code == 201
    book = await alchemy_async_session.scalar(select(Book).where(Book.isbn == "978-1101972120"))
    assert book is not None
    assert (book.title, book.times_borrowed) == ("Stories", 1)


async def test_the_lifespan_engine_is_not_the_test_database(
    alchemy_async_bind: Bind, alchemy_async_engine: AsyncEngine
) -> None:
    async with app.router.lifespan_context(app):
        engine = alchemy_async_bind(app.state.engine)
        # Its URL is still the configured one; bound, it hands out the test's connection.
        assert engine.url != alchemy_async_engine.url
        async with engine.connect() as connection:
            assert await connection.scalar(select(func.count()).select_from(Author)) == 0
