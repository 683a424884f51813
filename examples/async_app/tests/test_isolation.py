"""Nothing crosses from one test to the next, whoever wrote it.

The tests in this module run in file order: the first ones write through the
API, the app's own ``SessionLocal``, a second session and the connection;
the last one checks that none of it is left.
"""

from __future__ import annotations

from async_app.db import SessionLocal
from async_app.models import Customer, Product
from httpx import AsyncClient
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker


async def test_a_request_commits(client: AsyncClient) -> None:
    response = await client.post("/customers", json={"email": "ada@example.com", "name": "Ada"})

    assert response.status_code == 201


async def test_the_apps_own_session_factory_is_bound_to_the_test(
    alchemy_async_session: AsyncSession,
) -> None:
    async with SessionLocal() as session:
        session.add(Customer(email="alan@example.com", name="Alan"))
        await session.commit()

    # The app's session and the test's share the test's connection and transaction.
    assert await alchemy_async_session.scalar(select(Customer.name)) == "Alan"


async def test_two_sessions_from_the_sessionmaker(
    alchemy_async_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with alchemy_async_sessionmaker() as writer:
        writer.add(Product(sku="MUG-1", name="Mug", price_cents=900))
        await writer.commit()
    async with alchemy_async_sessionmaker() as reader:
        assert await reader.scalar(select(Product.sku)) == "MUG-1"


async def test_a_savepoint_of_the_connection(alchemy_async_connection: AsyncConnection) -> None:
    async with alchemy_async_connection.begin_nested():
        await alchemy_async_connection.execute(
            text("INSERT INTO customers (email, name) VALUES ('grace@example.com', 'Grace')")
        )

    count = await alchemy_async_connection.scalar(text("SELECT count(*) FROM customers"))
    assert count == 1


async def test_the_engine_is_on_the_test_database(alchemy_async_engine: AsyncEngine) -> None:
    assert (alchemy_async_engine.url.database or "").rsplit("/", 1)[-1].startswith("test_")


async def test_nothing_is_left(client: AsyncClient, alchemy_async_session: AsyncSession) -> None:
    assert (await client.get("/customers")).json() == []
    for model in (Customer, Product):
        assert await alchemy_async_session.scalar(select(func.count()).select_from(model)) == 0
