"""Orders: placing one takes stock, cancelling one gives it back."""

from __future__ import annotations

from dataclasses import dataclass

import pytest_asyncio
from async_app.models import Customer, Order, Product
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass
class Shop:
    ada: Customer
    alan: Customer
    lamp: Product


@pytest_asyncio.fixture
async def shop(alchemy_async_session: AsyncSession) -> Shop:
    """Two customers and a product with three in stock."""
    shop = Shop(
        ada=Customer(email="ada@example.com", name="Ada"),
        alan=Customer(email="alan@example.com", name="Alan"),
        lamp=Product(sku="LAMP-1", name="Desk lamp", price_cents=2500, stock=3),
    )
    alchemy_async_session.add_all([shop.ada, shop.alan, shop.lamp])
    await alchemy_async_session.flush()
    return shop


async def order(client: AsyncClient, customer: Customer, product: Product, quantity: int) -> int:
    response = await client.post(
        "/orders",
        json={"customer_id": customer.id, "product_id": product.id, "quantity": quantity},
    )
    return response.status_code


async def test_placing_an_order_takes_stock(
    client: AsyncClient, alchemy_async_session: AsyncSession, shop: Shop
) -> None:
    response = await client.post(
        "/orders", json={"customer_id": shop.ada.id, "product_id": shop.lamp.id, "quantity": 2}
    )

    assert response.status_code == 201
    assert response.json()["total_cents"] == 5000
    await alchemy_async_session.refresh(shop.lamp)
    assert shop.lamp.stock == 1


async def test_ordering_more_than_the_stock_is_a_conflict(
    client: AsyncClient, alchemy_async_session: AsyncSession, shop: Shop
) -> None:
    response = await client.post(
        "/orders", json={"customer_id": shop.ada.id, "product_id": shop.lamp.id, "quantity": 4}
    )

    assert response.status_code == 409
    assert response.json() == {"detail": f"only 3 of product {shop.lamp.id} in stock"}
    await alchemy_async_session.refresh(shop.lamp)
    assert shop.lamp.stock == 3
    assert (await alchemy_async_session.scalars(select(Order))).all() == []


async def test_the_last_item_goes_to_the_first_order(client: AsyncClient, shop: Shop) -> None:
    assert await order(client, shop.ada, shop.lamp, 3) == 201
    assert await order(client, shop.alan, shop.lamp, 1) == 409


async def test_order_for_an_unknown_customer_is_404(client: AsyncClient, shop: Shop) -> None:
    response = await client.post(
        "/orders", json={"customer_id": 4242, "product_id": shop.lamp.id, "quantity": 1}
    )

    assert response.status_code == 404
    assert response.json() == {"detail": "customer 4242 not found"}


async def test_cancelling_an_order_gives_the_stock_back(
    client: AsyncClient, alchemy_async_session: AsyncSession, shop: Shop
) -> None:
    placed = await client.post(
        "/orders", json={"customer_id": shop.ada.id, "product_id": shop.lamp.id, "quantity": 2}
    )

    response = await client.delete(f"/orders/{placed.json()['id']}")

    assert response.status_code == 204
    await alchemy_async_session.refresh(shop.lamp)
    assert shop.lamp.stock == 3
    assert (await client.get(f"/orders/{placed.json()['id']}")).status_code == 404


async def test_a_customer_sees_only_their_orders(client: AsyncClient, shop: Shop) -> None:
    assert await order(client, shop.ada, shop.lamp, 1) == 201
    assert await order(client, shop.alan, shop.lamp, 2) == 201

    response = await client.get(f"/customers/{shop.alan.id}/orders")

    assert [(row["customer_id"], row["quantity"]) for row in response.json()] == [(shop.alan.id, 2)]
