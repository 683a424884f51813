"""Signing up, logging in, and what happens without a valid token."""

from __future__ import annotations

from fastapi.testclient import TestClient
from library_app.models import Token, User
from sqlalchemy import func, select
from sqlalchemy.orm import Session

PASSWORD = "correct horse battery staple"
"""The password conftest.py signs the module's users up with."""


def test_the_module_user_is_logged_in(client: TestClient, auth: dict[str, str]) -> None:
    response = client.get("/me", headers=auth)

    assert response.status_code == 200
    assert response.json()["email"] == "ada@example.com"
    assert response.json()["display_name"] == "ada", "the display name defaults to the email's"


def test_no_token_is_401(client: TestClient, alchemy_session: Session) -> None:
    response = client.get("/me")

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_an_unknown_token_is_401(client: TestClient, auth: dict[str, str]) -> None:
    assert client.get("/me", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    assert client.get("/me", headers={"Authorization": "Basic abc"}).status_code == 401


def test_a_wrong_password_is_401(client: TestClient, auth: dict[str, str]) -> None:
    response = client.post("/login", json={"email": "ada@example.com", "password": "guess"})

    assert response.status_code == 401
    unknown = client.post("/login", json={"email": "nobody@x.org", "password": PASSWORD})
    assert unknown.status_code == 401


def test_signing_up_twice_is_a_conflict(client: TestClient, auth: dict[str, str]) -> None:
    response = client.post("/users", json={"email": "ADA@example.com", "password": PASSWORD})

    assert response.status_code == 409
    assert client.get("/me", headers=auth).status_code == 200, "the app's rollback kept the user"


def test_passwords_are_stored_hashed(auth: dict[str, str], alchemy_session: Session) -> None:
    stored = alchemy_session.scalars(select(User.password_hash)).one()

    assert stored.startswith("pbkdf2_sha256$")
    assert PASSWORD not in stored


def test_logging_out_revokes_the_token(
    client: TestClient, auth: dict[str, str], alchemy_session: Session
) -> None:
    assert client.post("/logout", headers=auth).status_code == 204

    assert client.get("/me", headers=auth).status_code == 401
    assert alchemy_session.scalar(select(func.count()).select_from(Token)) == 0


def test_the_token_is_back_after_the_logout_test(
    client: TestClient, auth: dict[str, str], alchemy_session: Session
) -> None:
    # The previous test deleted the layer's token; it was rolled back to the layer.
    assert client.get("/me", headers=auth).status_code == 200
    assert alchemy_session.scalar(select(func.count()).select_from(Token)) == 1
