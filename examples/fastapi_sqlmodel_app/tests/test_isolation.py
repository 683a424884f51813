"""Every test starts from the same database: the schema and the seeded superuser.

The routes commit as usual; inside a test those commits are savepoints of the
test's transaction, which is rolled back when the test ends.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from shop_app.core.config import settings
from shop_app.core.db import engine, init_db
from shop_app.models import User
from sqlalchemy import make_url
from sqlmodel import Session, func, select

from pytest_alchemy import DatabaseInfo

USERS = f"{settings.API_V1_STR}/users"
SIGNUP = {"email": "ada@example.com", "password": "correct horse"}


def user_emails(session: Session) -> list[str]:
    return list(session.exec(select(User.email).order_by(User.email)).all())


def test_a_request_commits(client: TestClient, alchemy_session: Session) -> None:
    assert client.post(f"{USERS}/", json=SIGNUP).status_code == 201

    assert user_emails(alchemy_session) == ["ada@example.com", settings.FIRST_SUPERUSER]


def test_b_the_next_test_sees_only_the_seed(client: TestClient, alchemy_session: Session) -> None:
    assert user_emails(alchemy_session) == [settings.FIRST_SUPERUSER]
    assert client.get(f"{USERS}/").json()["count"] == 1


@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_the_same_signup_in_every_test(client: TestClient, attempt: int) -> None:
    """Whatever order these run in, none of them finds the others' user."""
    response = client.post(f"{USERS}/", json={**SIGNUP, "full_name": f"Ada {attempt}"})

    assert response.status_code == 201
    assert client.get(f"{USERS}/").json()["count"] == 2


@pytest.mark.parametrize("attempt", [1, 2])
def test_the_seeded_superuser_is_in_every_test(alchemy_session: Session, attempt: int) -> None:
    admin = alchemy_session.exec(select(User).where(User.email == settings.FIRST_SUPERUSER)).one()

    assert admin.is_superuser
    assert admin.full_name == "Administrator"
    # Change it: the next test gets it back as seeded.
    admin.full_name = f"changed {attempt}"
    alchemy_session.commit()


def test_seeding_again_adds_no_second_superuser(alchemy_session: Session) -> None:
    init_db(alchemy_session)

    count = alchemy_session.exec(select(func.count()).select_from(User)).one()
    assert count == 1


def test_a_failed_request_leaves_the_test_transaction_usable(
    client: TestClient, alchemy_session: Session
) -> None:
    assert client.post(f"{USERS}/", json=SIGNUP).status_code == 201
    for _ in range(3):
        assert client.post(f"{USERS}/", json=SIGNUP).status_code == 400

    assert len(user_emails(alchemy_session)) == 2


def test_the_session_is_sqlmodels(alchemy_session: Session) -> None:
    assert isinstance(alchemy_session, Session)
    assert alchemy_session.exec(select(User.is_superuser)).all() == [True]


def test_the_apps_settings_lead_to_the_test_database(alchemy_database: DatabaseInfo) -> None:
    assert alchemy_database.name.startswith("test_")
    assert make_url(settings.DATABASE_URL).database == alchemy_database.url.database
    assert engine.url.database == alchemy_database.url.database
