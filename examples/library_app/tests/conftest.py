"""The HTTP client and the logged-in user. The database fixtures all come from
pytest-alchemy: this file has no database code."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from library_app.main import app

import pytest_alchemy

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def sign_up_and_log_in(client: TestClient, email: str) -> dict[str, str]:
    """Sign ``email`` up and log in, through the API; the headers that carry its token."""
    response = client.post("/users", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    response = client.post("/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest_alchemy.layer(scope="module")
def auth(client: TestClient) -> dict[str, str]:
    """A user signed up and logged in once per module, through the API.

    The user's row and token are written by the app's own session in the module's
    layer: every test of the module sees them, each test is rolled back to them, and
    they are rolled back when the module ends.
    """
    return sign_up_and_log_in(client, "ada@example.com")


@pytest_alchemy.layer(scope="module")
def other_auth(client: TestClient, auth: dict[str, str]) -> dict[str, str]:
    """A second user of the module, for what only an article's author may do."""
    return sign_up_and_log_in(client, "grace@example.com")
