"""Loans: borrowing a copy (and the background task that counts it), returning it."""

from __future__ import annotations

import pytest_asyncio
from httpx import AsyncClient
from library_lifespan.models import Author, Book, Loan, utcnow
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession


@pytest_asyncio.fixture
async def book(alchemy_async_session: AsyncSession) -> Book:
    """A book with one copy, in the test's transaction."""
    author = Author(name="Stanisław Lem")
    alchemy_async_session.add(author)
    await alchemy_async_session.flush()
    book = Book(isbn="978-0156027601", title="Solaris", author_id=author.id, copies=1)
    alchemy_async_session.add(book)
    await alchemy_async_session.flush()
    return book


async def test_borrow_a_book(
    client: AsyncClient, alchemy_async_session: AsyncSession, book: Book
) -> None:
    response = await client.post(f"/books/{book.id}/loans", json={"member": "ada"})

    assert response.status_code == 201
    body = response.json()
    assert (body["book_id"], body["member"], body["returned_at"]) == (book.id, "ada", None)
    loan = await alchemy_async_session.get(Loan, body["id"])
    assert loan is not None
    assert loan.member == "ada"


async def test_the_background_task_counts_the_loan(
    client: AsyncClient, alchemy_async_session: AsyncSession, book: Book
) -> None:
    response = await client.post(f"/books/{book.id}/loans", json={"member": "ada"})

    # The task ran after the response was sent, on the request's session, and
    # committed: a savepoint inside the test's transaction, visible here.
    assert response.status_code == 201
    assert response.json()["book_id"] == book.id
    await alchemy_async_session.refresh(book)
    assert book.times_borrowed == 1
    assert (await client.get(f"/books/{book.id}")).json()["times_borrowed"] == 1


async def test_no_copy_left_is_a_conflict(
    client: AsyncClient, alchemy_async_session: AsyncSession, book: Book
) -> None:
    first = await client.post(f"/books/{book.id}/loans", json={"member": "ada"})
    second = await client.post(f"/books/{book.id}/loans", json={"member": "alan"})

    assert first.status_code == 201
    assert second.status_code == 409
    assert second.json() == {"detail": f"no copy of book {book.id} is available"}
    members = await alchemy_async_session.scalars(select(Loan.member))
    assert members.all() == ["ada"]
    await alchemy_async_session.refresh(book)
    assert book.times_borrowed == 1


async def test_borrowing_an_unknown_book_is_404(client: AsyncClient) -> None:
    response = await client.post("/books/4242/loans", json={"member": "ada"})

    assert response.status_code == 404
    assert response.json() == {"detail": "book 4242 not found"}


async def test_return_a_loan(
    client: AsyncClient, alchemy_async_session: AsyncSession, book: Book
) -> None:
    loan = Loan(book_id=book.id, member="grace")
    alchemy_async_session.add(loan)
    await alchemy_async_session.flush()

    response = await client.post(f"/loans/{loan.id}/return")

    assert response.status_code == 200
    assert response.json()["returned_at"] is not None
    await alchemy_async_session.refresh(loan)
    assert loan.returned_at is not None
    # The copy is back: it can be borrowed again.
    again = await client.post(f"/books/{book.id}/loans", json={"member": "alan"})
    assert again.status_code == 201


async def test_returning_twice_is_a_conflict(
    client: AsyncClient, alchemy_async_session: AsyncSession, book: Book
) -> None:
    loan = Loan(book_id=book.id, member="grace", returned_at=utcnow())
    alchemy_async_session.add(loan)
    await alchemy_async_session.flush()

    response = await client.post(f"/loans/{loan.id}/return")

    assert response.status_code == 409
    assert response.json() == {"detail": f"loan {loan.id} was already returned"}


async def test_active_loans(
    client: AsyncClient, alchemy_async_session: AsyncSession, book: Book
) -> None:
    alchemy_async_session.add_all(
        [
            Loan(book_id=book.id, member="grace", returned_at=utcnow()),
            Loan(book_id=book.id, member="ada"),
        ]
    )
    await alchemy_async_session.flush()

    every = (await client.get("/loans")).json()
    active = (await client.get("/loans", params={"active": "true"})).json()

    assert [loan["member"] for loan in every] == ["grace", "ada"]
    assert [loan["member"] for loan in active] == ["ada"]
