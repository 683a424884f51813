"""Authors: create, read, list, the unique name, and the books of one author."""

from __future__ import annotations

from httpx import AsyncClient
from library_lifespan.models import Author, Book
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession


async def test_create_author(client: AsyncClient, alchemy_async_session: AsyncSession) -> None:
    response = await client.post("/authors", json={"name": "  Ursula K. Le Guin "})

    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "Ursula K. Le Guin"
    author = await alchemy_async_session.get(Author, body["id"])
    assert author is not None
    assert author.name == "Ursula K. Le Guin"


async def test_duplicate_name_is_a_conflict_and_keeps_the_seeded_author(
    client: AsyncClient, alchemy_async_session: AsyncSession
) -> None:
    alchemy_async_session.add(Author(name="Italo Calvino"))
    await alchemy_async_session.commit()

    response = await client.post("/authors", json={"name": "Italo Calvino"})

    # The app rolled back after the IntegrityError: back to its own savepoint only,
    # so the author this test committed is still there.
    assert response.status_code == 409
    names = await alchemy_async_session.scalars(select(Author.name))
    assert names.all() == ["Italo Calvino"]


async def test_list_authors_by_name(
    client: AsyncClient, alchemy_async_session: AsyncSession
) -> None:
    alchemy_async_session.add_all([Author(name="Toni Morrison"), Author(name="Chinua Achebe")])
    await alchemy_async_session.flush()

    response = await client.get("/authors")

    assert [author["name"] for author in response.json()] == ["Chinua Achebe", "Toni Morrison"]


async def test_read_author(client: AsyncClient, alchemy_async_session: AsyncSession) -> None:
    author = Author(name="Jorge Luis Borges")
    alchemy_async_session.add(author)
    await alchemy_async_session.flush()

    response = await client.get(f"/authors/{author.id}")

    assert response.status_code == 200
    assert response.json() == {"id": author.id, "name": "Jorge Luis Borges"}


async def test_unknown_author_is_404(client: AsyncClient) -> None:
    response = await client.get("/authors/4242")

    assert response.status_code == 404
    assert response.json() == {"detail": "author 4242 not found"}


async def test_books_of_an_author(client: AsyncClient, alchemy_async_session: AsyncSession) -> None:
    calvino, borges = Author(name="Italo Calvino"), Author(name="Jorge Luis Borges")
    alchemy_async_session.add_all([calvino, borges])
    await alchemy_async_session.flush()
    alchemy_async_session.add_all(
        [
            Book(isbn="978-0156439619", title="Invisible Cities", author_id=calvino.id),
            Book(isbn="978-0142437889", title="Ficciones", author_id=borges.id),
            Book(isbn="978-0156027335", title="If on a winter's night", author_id=calvino.id),
        ]
    )
    await alchemy_async_session.flush()

    response = await client.get(f"/authors/{calvino.id}/books")

    titles = [book["title"] for book in response.json()]
    assert titles == ["If on a winter's night", "Invisible Cities"]
