"""Requests the tests make again and again, through the test client."""

from __future__ import annotations

from flask.testing import FlaskClient


def sign_up(client: FlaskClient, username: str, email: str | None = None) -> int:
    """The id of a new user ``username``."""
    response = client.post(
        "/users", json={"username": username, "email": email or f"{username}@example.com"}
    )
    assert response.status_code == 201, response.json
    return int(response.json["id"])


def write(client: FlaskClient, author_id: int, title: str, **extra: str) -> int:
    """The id of a new draft post."""
    response = client.post("/posts", json={"author_id": author_id, "title": title, **extra})
    assert response.status_code == 201, response.json
    return int(response.json["id"])
