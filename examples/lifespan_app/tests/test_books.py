"""Books: create under an author, the unique isbn, update, and delete."""

from __future__ import annotations

import pytest
import pytest_asyncio
from httpx import AsyncClient
from library_lifespan.models import Author, Book, Loan
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession


@pytest_asyncio.fixture
async def author(alchemy_async_session: AsyncSession) -> Author:
    """An author in the test's transaction; gone again after the test."""
    author = Author(name="Octavia E. Butler")
    alchemy_async_session.add(author)
    await alchemy_async_session.flush()
    return author


@pytest_asyncio.fixture
async def book(alchemy_async_session: AsyncSession, author: Author) -> Book:
    book = Book(isbn="978-0807083697", title="Kindred", author_id=author.id, copies=2)
    alchemy_async_session.add(book)
    await alchemy_async_session.flush()
    return book


async def test_create_book(
    client: AsyncClient, alchemy_async_session: AsyncSession, author: Author
) -> None:
    response = await client.post(
        "/books",
        json={"isbn": "978-1538732182", "title": "Parable of the Sower", "author_id": author.id},
    )

    assert response.status_code == 201
    assert response.json()["copies"] == 1
    assert response.json()["times_borrowed"] == 0
    book = await alchemy_async_session.scalar(select(Book).where(Book.isbn == "978-1538732182"))
    assert book is not None
    assert book.author_id == author.id


async def test_a_book_of_an_unknown_author_is_404(
    client: AsyncClient, alchemy_async_session: AsyncSession
) -> None:
    response = await client.post(
        "/books", json={"isbn": "978-0000000000", "title": "Nobody's", "author_id": 99}
    )

    assert response.status_code == 404
    assert await alchemy_async_session.scalar(select(func.count()).select_from(Book)) == 0


async def test_duplicate_isbn_is_a_conflict(
    client: AsyncClient, alchemy_async_session: AsyncSession, book: Book
) -> None:
    response = await client.post(
        "/books", json={"isbn": book.isbn, "title": "Kindred again", "author_id": book.author_id}
    )

    assert response.status_code == 409
    titles = await alchemy_async_session.scalars(select(Book.title))
    assert titles.all() == ["Kindred"]


async def test_list_books_by_title(
    client: AsyncClient, alchemy_async_session: AsyncSession, author: Author
) -> None:
    alchemy_async_session.add_all(
        [
            Book(isbn="978-0446675505", title="Parable of the Talents", author_id=author.id),
            Book(isbn="978-0446677608", title="Dawn", author_id=author.id),
        ]
    )
    await alchemy_async_session.flush()

    response = await client.get("/books")

    assert [book["title"] for book in response.json()] == ["Dawn", "Parable of the Talents"]


async def test_update_book(
    client: AsyncClient, alchemy_async_session: AsyncSession, book: Book
) -> None:
    response = await client.patch(f"/books/{book.id}", json={"copies": 5})

    assert response.status_code == 200
    assert response.json()["copies"] == 5
    assert response.json()["title"] == "Kindred"
    # The request changed the row behind the test's session: reload it.
    await alchemy_async_session.refresh(book)
    assert book.copies == 5


@pytest.mark.parametrize("body", [{"copies": -1}, {"title": ""}])
async def test_an_invalid_update_is_422_and_changes_nothing(
    client: AsyncClient, alchemy_async_session: AsyncSession, book: Book, body: dict[str, object]
) -> None:
    response = await client.patch(f"/books/{book.id}", json=body)

    assert response.status_code == 422
    await alchemy_async_session.refresh(book)
    assert (book.title, book.copies) == ("Kindred", 2)


async def test_delete_book(
    client: AsyncClient, alchemy_async_session: AsyncSession, book: Book
) -> None:
    response = await client.delete(f"/books/{book.id}")

    assert response.status_code == 204
    assert await alchemy_async_session.scalar(select(func.count()).select_from(Book)) == 0


async def test_a_book_with_loans_is_not_deleted(
    client: AsyncClient, alchemy_async_session: AsyncSession, book: Book
) -> None:
    alchemy_async_session.add(Loan(book_id=book.id, member="ada"))
    await alchemy_async_session.flush()

    response = await client.delete(f"/books/{book.id}")

    assert response.status_code == 409
    assert response.json() == {"detail": f"book {book.id} has loans"}
    assert await alchemy_async_session.get(Book, book.id) is not None
