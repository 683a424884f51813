"""Customers: create, read, list, and the unique email."""

from __future__ import annotations

from async_app.models import Customer
from httpx import AsyncClient
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession


async def test_create_customer(client: AsyncClient, alchemy_async_session: AsyncSession) -> None:
    response = await client.post("/customers", json={"email": "Ada@Example.com", "name": "Ada"})

    assert response.status_code == 201
    body = response.json()
    assert body["email"] == "ada@example.com"
    customer = await alchemy_async_session.get(Customer, body["id"])
    assert customer is not None
    assert customer.name == "Ada"


async def test_duplicate_email_is_a_conflict_and_keeps_the_seeded_customer(
    client: AsyncClient, alchemy_async_session: AsyncSession
) -> None:
    alchemy_async_session.add(Customer(email="ada@example.com", name="Ada"))
    await alchemy_async_session.commit()

    response = await client.post("/customers", json={"email": "ADA@example.com", "name": "Eve"})

    # The app rolled back after the IntegrityError: back to its own savepoint only,
    # so the customer this test committed is still there.
    assert response.status_code == 409
    names = await alchemy_async_session.scalars(select(Customer.name))
    assert names.all() == ["Ada"]


async def test_read_customer(client: AsyncClient, alchemy_async_session: AsyncSession) -> None:
    ada = Customer(email="ada@example.com", name="Ada")
    alchemy_async_session.add(ada)
    await alchemy_async_session.flush()

    response = await client.get(f"/customers/{ada.id}")

    assert response.status_code == 200
    assert response.json() == {"id": ada.id, "email": "ada@example.com", "name": "Ada"}


async def test_unknown_customer_is_404(client: AsyncClient) -> None:
    response = await client.get("/customers/4242")

    assert response.status_code == 404
    assert response.json() == {"detail": "customer 4242 not found"}


async def test_list_sees_rows_inserted_through_the_connection(
    client: AsyncClient, alchemy_async_connection: AsyncConnection
) -> None:
    await alchemy_async_connection.execute(
        insert(Customer),
        [
            {"email": "ada@example.com", "name": "Ada"},
            {"email": "alan@example.com", "name": "Alan"},
        ],
    )

    response = await client.get("/customers")

    assert [customer["name"] for customer in response.json()] == ["Ada", "Alan"]
