"""Nothing crosses from one test to the next, whoever wrote it.

The tests in this module run in file order: the first ones write through the
API, the lifespan's sessionmaker and the test's own session; the last one checks
that none of it is left.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from httpx import AsyncClient
from library_lifespan.main import app
from library_lifespan.models import Author, Book, Loan
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession


async def test_a_request_commits(client: AsyncClient) -> None:
    author = await client.post("/authors", json={"name": "Ada Lovelace"})
    book = await client.post(
        "/books",
        json={"isbn": "978-0000000001", "title": "Notes", "author_id": author.json()["id"]},
    )
    loan = await client.post(f"/books/{book.json()['id']}/loans", json={"member": "charles"})

    assert (author.status_code, book.status_code, loan.status_code) == (201, 201, 201)


async def test_the_lifespan_sessionmaker_commits(
    alchemy_async_bind: Callable[[Any], Any],
) -> None:
    async with app.router.lifespan_context(app):
        maker = alchemy_async_bind(app.state.sessionmaker)
        async with maker() as session:
            session.add(Author(name="Mary Shelley"))
            await session.commit()


async def test_the_test_session_commits(alchemy_async_session: AsyncSession) -> None:
    alchemy_async_session.add(Author(name="Grace Hopper"))
    await alchemy_async_session.commit()


async def test_nothing_is_left(client: AsyncClient, alchemy_async_session: AsyncSession) -> None:
    assert (await client.get("/authors")).json() == []
    for model in (Author, Book, Loan):
        assert await alchemy_async_session.scalar(select(func.count()).select_from(model)) == 0
