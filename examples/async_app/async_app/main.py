"""The HTTP API: customers, products, and the orders that take products from stock.

Run it with ``python -m async_app.db`` (creates the tables) and then
``uvicorn async_app.main:app``.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Response, status
from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from .db import get_session
from .models import Customer, Order, Product
from .schemas import (
    CustomerCreate,
    CustomerRead,
    OrderCreate,
    OrderRead,
    ProductCreate,
    ProductRead,
    ProductUpdate,
)

app = FastAPI(title="Shop API")

DB = Annotated[AsyncSession, Depends(get_session)]
Row = TypeVar("Row", Customer, Product, Order)


async def commit_or_conflict(session: AsyncSession, detail: str) -> None:
    """Commit, turning a unique-constraint violation into 409 Conflict."""
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, detail) from None


async def get_or_404(session: AsyncSession, model: type[Row], id_: int) -> Row:
    row = await session.get(model, id_)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{model.__name__.lower()} {id_} not found")
    return row


# -- customers -------------------------------------------------------------------------


@app.post("/customers", response_model=CustomerRead, status_code=status.HTTP_201_CREATED)
async def create_customer(body: CustomerCreate, session: DB) -> Customer:
    customer = Customer(email=body.email.strip().lower(), name=body.name)
    session.add(customer)
    await commit_or_conflict(session, f"a customer with email {customer.email} already exists")
    return customer


@app.get("/customers", response_model=list[CustomerRead])
async def list_customers(session: DB) -> list[Customer]:
    return list(await session.scalars(select(Customer).order_by(Customer.id)))


@app.get("/customers/{customer_id}", response_model=CustomerRead)
async def read_customer(customer_id: int, session: DB) -> Customer:
    return await get_or_404(session, Customer, customer_id)


@app.get("/customers/{customer_id}/orders", response_model=list[OrderRead])
async def list_orders_of(customer_id: int, session: DB) -> list[Order]:
    await get_or_404(session, Customer, customer_id)
    query = select(Order).where(Order.customer_id == customer_id).order_by(Order.id)
    return list(await session.scalars(query))


# -- products --------------------------------------------------------------------------


@app.post("/products", response_model=ProductRead, status_code=status.HTTP_201_CREATED)
async def create_product(body: ProductCreate, session: DB) -> Product:
    product = Product(**body.model_dump())
    session.add(product)
    await commit_or_conflict(session, f"a product with sku {product.sku} already exists")
    return product


@app.get("/products", response_model=list[ProductRead])
async def list_products(session: DB) -> list[Product]:
    return list(await session.scalars(select(Product).order_by(Product.sku)))


@app.patch("/products/{product_id}", response_model=ProductRead)
async def update_product(product_id: int, body: ProductUpdate, session: DB) -> Product:
    product = await get_or_404(session, Product, product_id)
    for field, value in body.model_dump(exclude_unset=True).items():
        setattr(product, field, value)
    await session.commit()
    return product


@app.delete("/products/{product_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_product(product_id: int, session: DB) -> Response:
    product = await get_or_404(session, Product, product_id)
    if await session.scalar(select(exists().where(Order.product_id == product_id))):
        raise HTTPException(status.HTTP_409_CONFLICT, f"product {product_id} has orders")
    await session.delete(product)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- orders ----------------------------------------------------------------------------


@app.post("/orders", response_model=OrderRead, status_code=status.HTTP_201_CREATED)
async def place_order(body: OrderCreate, session: DB) -> Order:
    await get_or_404(session, Customer, body.customer_id)
    product = await get_or_404(session, Product, body.product_id)
    available, price_cents = product.stock, product.price_cents
    # Take the stock in one statement, so two orders for the last item cannot both win.
    taken = await session.execute(
        update(Product)
        .where(Product.id == product.id, Product.stock >= body.quantity)
        .values(stock=Product.stock - body.quantity)
        .returning(Product.stock)
    )
    if taken.scalar_one_or_none() is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"only {available} of product {body.product_id} in stock"
        )
    order = Order(
        customer_id=body.customer_id,
        product_id=body.product_id,
        quantity=body.quantity,
        total_cents=body.quantity * price_cents,
    )
    session.add(order)
    await session.commit()
    return order


@app.get("/orders/{order_id}", response_model=OrderRead)
async def read_order(order_id: int, session: DB) -> Order:
    return await get_or_404(session, Order, order_id)


@app.delete("/orders/{order_id}", status_code=status.HTTP_204_NO_CONTENT)
async def cancel_order(order_id: int, session: DB) -> Response:
    """Cancel an order and put its items back in stock."""
    order = await get_or_404(session, Order, order_id)
    await session.execute(
        update(Product)
        .where(Product.id == order.product_id)
        .values(stock=Product.stock + order.quantity)
    )
    await session.delete(order)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
