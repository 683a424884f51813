"""Products: create, list, update, delete, and the unique sku."""

from __future__ import annotations

import pytest_asyncio
from async_app.models import Customer, Order, Product
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession


@pytest_asyncio.fixture
async def lamp(alchemy_async_session: AsyncSession) -> Product:
    """A product in the test's transaction, where the app's requests see it.

    Flushed rather than committed: a commit expires the object's attributes, and
    under asyncio an expired attribute cannot be loaded on access (``await
    session.refresh(obj)`` would). Tests that commit work just as well.
    """
    product = Product(sku="LAMP-1", name="Desk lamp", price_cents=2500, stock=3)
    alchemy_async_session.add(product)
    await alchemy_async_session.flush()
    return product


async def test_create_product(client: AsyncClient, alchemy_async_session: AsyncSession) -> None:
    response = await client.post(
        "/products", json={"sku": "MUG-1", "name": "Mug", "price_cents": 900, "stock": 10}
    )

    assert response.status_code == 201
    product = await alchemy_async_session.get(Product, response.json()["id"])
    assert product is not None
    assert (product.sku, product.stock) == ("MUG-1", 10)


async def test_duplicate_sku_is_a_conflict(
    client: AsyncClient, alchemy_async_session: AsyncSession, lamp: Product
) -> None:
    response = await client.post(
        "/products", json={"sku": "LAMP-1", "name": "Other lamp", "price_cents": 1}
    )

    assert response.status_code == 409
    assert response.json() == {"detail": "a product with sku LAMP-1 already exists"}
    assert (await alchemy_async_session.scalars(select(Product.name))).all() == ["Desk lamp"]


async def test_products_are_listed_by_sku(
    client: AsyncClient, alchemy_async_session: AsyncSession
) -> None:
    alchemy_async_session.add_all(
        [
            Product(sku="C-3", name="Chair", price_cents=4000),
            Product(sku="A-1", name="Armchair", price_cents=9000),
            Product(sku="B-2", name="Bench", price_cents=6000),
        ]
    )
    await alchemy_async_session.commit()

    response = await client.get("/products")

    assert [product["sku"] for product in response.json()] == ["A-1", "B-2", "C-3"]


async def test_update_product(
    client: AsyncClient, alchemy_async_session: AsyncSession, lamp: Product
) -> None:
    response = await client.patch(f"/products/{lamp.id}", json={"price_cents": 1999})

    assert response.status_code == 200
    assert response.json()["price_cents"] == 1999
    # The request changed the row through its own session: reload the test's copy.
    await alchemy_async_session.refresh(lamp)
    assert (lamp.price_cents, lamp.stock) == (1999, 3)


async def test_update_unknown_product_is_404(client: AsyncClient) -> None:
    response = await client.patch("/products/4242", json={"stock": 1})

    assert response.status_code == 404


async def test_delete_product(
    client: AsyncClient, alchemy_async_session: AsyncSession, lamp: Product
) -> None:
    response = await client.delete(f"/products/{lamp.id}")

    assert response.status_code == 204
    assert (await alchemy_async_session.scalars(select(Product))).all() == []


async def test_a_product_with_orders_cannot_be_deleted(
    client: AsyncClient, alchemy_async_session: AsyncSession, lamp: Product
) -> None:
    ada = Customer(email="ada@example.com", name="Ada")
    alchemy_async_session.add(Order(customer=ada, product=lamp, quantity=1, total_cents=2500))
    await alchemy_async_session.flush()

    response = await client.delete(f"/products/{lamp.id}")

    assert response.status_code == 409
    assert await alchemy_async_session.get(Product, lamp.id) is lamp
