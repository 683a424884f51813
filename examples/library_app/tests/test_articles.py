"""Articles: drafts and publishing, tags, comments and the trigram search."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from library_app.models import Tag
from sqlalchemy import select
from sqlalchemy.orm import Session

DEFAULT_TAGS = ["databases", "news", "python", "testing"]


def write(client: TestClient, auth: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"title": "Untitled", "body": "...", **fields}
    response = client.post("/articles", json=body, headers=auth)
    assert response.status_code == 201, response.text
    return response.json()


def test_a_draft_is_listed_once_published(client: TestClient, auth: dict[str, str]) -> None:
    article = write(client, auth, title="Savepoints explained")
    assert article["published"] is False
    assert client.get("/articles").json() == []

    published = client.post(f"/articles/{article['id']}/publish", headers=auth)

    assert published.status_code == 200
    assert [each["title"] for each in client.get("/articles").json()] == ["Savepoints explained"]


def test_a_draft_is_hidden_from_other_users(
    client: TestClient, auth: dict[str, str], other_auth: dict[str, str]
) -> None:
    article = write(client, auth, title="Secret draft")

    assert client.get(f"/articles/{article['id']}", headers=auth).status_code == 200
    assert client.get(f"/articles/{article['id']}", headers=other_auth).status_code == 404
    assert client.get(f"/articles/{article['id']}").status_code == 404


def test_only_the_author_publishes(
    client: TestClient, auth: dict[str, str], other_auth: dict[str, str]
) -> None:
    article = write(client, auth, title="Mine", published=True)

    assert client.post(f"/articles/{article['id']}/publish", headers=other_auth).status_code == 403
    assert client.post(f"/articles/{article['id']}/publish").status_code == 401


def test_the_default_tags_come_from_the_data_migration(
    client: TestClient, alchemy_session: Session
) -> None:
    assert client.get("/tags").json() == DEFAULT_TAGS
    assert alchemy_session.scalars(select(Tag.name).order_by(Tag.id)).all() == DEFAULT_TAGS


def test_tagging_uses_the_default_tags_and_makes_new_ones(
    client: TestClient, auth: dict[str, str], alchemy_session: Session
) -> None:
    article = write(client, auth, title="Fixtures", published=True, tags=["Python"])

    tagged = client.post(
        f"/articles/{article['id']}/tags", json={"names": ["testing", "pytest"]}, headers=auth
    )

    assert tagged.json()["tags"] == ["pytest", "python", "testing"]
    assert client.get("/tags").json() == sorted([*DEFAULT_TAGS, "pytest"])
    assert [each["id"] for each in client.get("/articles", params={"tag": "pytest"}).json()] == [
        article["id"]
    ]
    assert client.get("/articles", params={"tag": "news"}).json() == []
    python = alchemy_session.scalars(select(Tag).where(Tag.name == "python")).one()
    assert python.id <= len(DEFAULT_TAGS), "the default tag was reused, not made again"


def test_comments(client: TestClient, auth: dict[str, str], other_auth: dict[str, str]) -> None:
    article = write(client, auth, title="Open for comments", published=True)

    first = client.post(
        f"/articles/{article['id']}/comments", json={"body": "Nice"}, headers=other_auth
    )
    client.post(f"/articles/{article['id']}/comments", json={"body": "Thanks"}, headers=auth)

    assert first.status_code == 201
    assert first.json()["author"]["email"] == "grace@example.com"
    comments = client.get(f"/articles/{article['id']}/comments").json()
    assert [(each["author"]["display_name"], each["body"]) for each in comments] == [
        ("grace", "Nice"),
        ("ada", "Thanks"),
    ]
    anonymous = client.post(f"/articles/{article['id']}/comments", json={"body": "x"})
    assert anonymous.status_code == 401
    missing = client.post("/articles/999999/comments", json={"body": "x"}, headers=auth)
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("postgres trigram", "Trigram search in PostgreSQL"),
        ("tesing with pytset", "Testing with pytest"),  # misspelt, found all the same
    ],
)
def test_search_by_trigram_similarity(
    client: TestClient, auth: dict[str, str], query: str, expected: str
) -> None:
    for title in ("Trigram search in PostgreSQL", "Testing with pytest", "Gardening for cats"):
        write(client, auth, title=title, published=True)
    write(client, auth, title=f"{expected} (draft)")

    hits = client.get("/search", params={"q": query}).json()

    assert [hit["title"] for hit in hits] == [expected]
    assert 0 < hits[0]["score"] <= 1


def test_search_finds_nothing_unlike(client: TestClient, auth: dict[str, str]) -> None:
    write(client, auth, title="Trigram search in PostgreSQL", published=True)

    assert client.get("/search", params={"q": "zebra"}).json() == []
    assert client.get("/search", params={"q": "z"}).status_code == 422
