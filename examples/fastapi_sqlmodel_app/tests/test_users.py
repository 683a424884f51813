"""Users: what a request writes, the test's session sees, and the other way round."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from shop_app import crud
from shop_app.core.config import settings
from shop_app.core.security import verify_password
from shop_app.models import Item, ItemCreate, User, UserCreate
from sqlmodel import Session, select

USERS = f"{settings.API_V1_STR}/users"


def make_user(
    session: Session, email: str = "ada@example.com", full_name: str | None = None
) -> User:
    user_in = UserCreate(email=email, password="correct horse", full_name=full_name)
    return crud.create_user(session=session, user_create=user_in)


def test_create_user_is_seen_by_the_test_session(
    client: TestClient, alchemy_session: Session
) -> None:
    response = client.post(
        f"{USERS}/",
        json={"email": "Ada@Example.com", "password": "correct horse", "full_name": "Ada"},
    )

    assert response.status_code == 201
    body = response.json()
    assert body["email"] == "ada@example.com"
    assert "password" not in body
    assert "hashed_password" not in body
    user = alchemy_session.exec(select(User).where(User.email == "ada@example.com")).one()
    assert str(user.id) == body["id"]
    assert user.full_name == "Ada"
    assert verify_password("correct horse", user.hashed_password)


def test_users_made_by_the_test_are_listed_by_the_api(
    client: TestClient, alchemy_session: Session
) -> None:
    make_user(alchemy_session, "ada@example.com")
    make_user(alchemy_session, "alan@example.com")

    body = client.get(f"{USERS}/").json()

    assert body["count"] == 3
    assert [user["email"] for user in body["data"]] == [
        "ada@example.com",
        settings.FIRST_SUPERUSER,
        "alan@example.com",
    ]


def test_paging(client: TestClient, alchemy_session: Session) -> None:
    for name in ("b", "c", "d"):
        make_user(alchemy_session, f"{name}@example.com")

    body = client.get(f"{USERS}/", params={"skip": 1, "limit": 2}).json()

    assert body["count"] == 4
    assert [user["email"] for user in body["data"]] == ["b@example.com", "c@example.com"]


def test_duplicate_email_is_refused(client: TestClient, alchemy_session: Session) -> None:
    make_user(alchemy_session, "ada@example.com")

    response = client.post(
        f"{USERS}/", json={"email": "ADA@example.com", "password": "another one"}
    )

    assert response.status_code == 400
    assert response.json() == {"detail": "The user with this email already exists in the system."}
    assert len(alchemy_session.exec(select(User)).all()) == 2


def test_invalid_bodies_are_rejected_before_the_database(
    client: TestClient, alchemy_session: Session
) -> None:
    for body in (
        {"email": "not an email", "password": "correct horse"},
        {"email": "ada@example.com", "password": "short"},
        {"email": "ada@example.com"},
    ):
        response = client.post(f"{USERS}/", json=body)
        assert response.status_code == 422, body

    assert alchemy_session.exec(select(User.email)).all() == [settings.FIRST_SUPERUSER]


def test_read_user(client: TestClient, alchemy_session: Session) -> None:
    user = make_user(alchemy_session, full_name="Ada Lovelace")

    response = client.get(f"{USERS}/{user.id}")

    assert response.status_code == 200
    assert response.json()["full_name"] == "Ada Lovelace"


def test_unknown_user_is_404(client: TestClient) -> None:
    response = client.get(f"{USERS}/{uuid.uuid4()}")

    assert response.status_code == 404
    assert response.json() == {"detail": "User not found"}


def test_malformed_user_id_is_422(client: TestClient) -> None:
    assert client.get(f"{USERS}/42").status_code == 422


def test_update_user(client: TestClient, alchemy_session: Session) -> None:
    user = make_user(alchemy_session)

    response = client.patch(
        f"{USERS}/{user.id}", json={"full_name": "Countess", "password": "new password"}
    )

    assert response.status_code == 200
    alchemy_session.refresh(user)
    assert user.full_name == "Countess"
    assert verify_password("new password", user.hashed_password)
    assert user.email == "ada@example.com"


def test_update_to_a_taken_email_is_a_conflict(
    client: TestClient, alchemy_session: Session
) -> None:
    user = make_user(alchemy_session)

    response = client.patch(f"{USERS}/{user.id}", json={"email": settings.FIRST_SUPERUSER})

    assert response.status_code == 409
    alchemy_session.refresh(user)
    assert user.email == "ada@example.com"


def test_delete_user_deletes_their_items(client: TestClient, alchemy_session: Session) -> None:
    user = make_user(alchemy_session)
    for title in ("tea", "coffee"):
        item_in = ItemCreate(title=title)
        crud.create_item(session=alchemy_session, item_in=item_in, owner_id=user.id)
    user_id = user.id
    assert len(user.items) == 2

    response = client.delete(f"{USERS}/{user_id}")

    assert response.status_code == 200
    assert response.json() == {"message": "User deleted successfully"}
    alchemy_session.expire_all()
    assert alchemy_session.get(User, user_id) is None
    assert alchemy_session.exec(select(Item)).all() == []


def test_the_superuser_cannot_be_deleted(client: TestClient, alchemy_session: Session) -> None:
    admin = crud.get_user_by_email(session=alchemy_session, email=settings.FIRST_SUPERUSER)
    assert admin is not None

    response = client.delete(f"{USERS}/{admin.id}")

    assert response.status_code == 403
    assert crud.get_user_by_email(session=alchemy_session, email=settings.FIRST_SUPERUSER)
