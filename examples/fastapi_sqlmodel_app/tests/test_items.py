"""Items and their owners: a foreign key and a relationship, through the API."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from shop_app import crud
from shop_app.core.config import settings
from shop_app.models import Item, ItemCreate, User, UserCreate
from sqlmodel import Session, select

API = settings.API_V1_STR


@pytest.fixture
def owner(alchemy_session: Session) -> User:
    user_in = UserCreate(email="ada@example.com", password="correct horse")
    return crud.create_user(session=alchemy_session, user_create=user_in)


def add_item(session: Session, owner: User, title: str, price_cents: int = 100) -> Item:
    item_in = ItemCreate(title=title, price_cents=price_cents)
    return crud.create_item(session=session, item_in=item_in, owner_id=owner.id)


def test_create_item_for_a_user(client: TestClient, alchemy_session: Session, owner: User) -> None:
    response = client.post(
        f"{API}/users/{owner.id}/items/",
        json={"title": "Tea", "description": "Assam", "price_cents": 450},
    )

    assert response.status_code == 201
    assert response.json()["owner_id"] == str(owner.id)
    item = alchemy_session.exec(select(Item).where(Item.title == "Tea")).one()
    assert item.owner is not None
    assert item.owner.email == "ada@example.com"
    alchemy_session.refresh(owner)
    assert [item.title for item in owner.items] == ["Tea"]


def test_items_of_a_user(client: TestClient, alchemy_session: Session, owner: User) -> None:
    add_item(alchemy_session, owner, "Tea")
    add_item(alchemy_session, owner, "Coffee")

    body = client.get(f"{API}/users/{owner.id}/items/").json()

    assert body["count"] == 2
    assert [item["title"] for item in body["data"]] == ["Coffee", "Tea"]


def test_item_for_an_unknown_user_is_404(client: TestClient, alchemy_session: Session) -> None:
    response = client.post(f"{API}/users/{uuid.uuid4()}/items/", json={"title": "Tea"})

    assert response.status_code == 404
    assert alchemy_session.exec(select(Item)).all() == []


def test_an_inactive_user_gets_no_items(
    client: TestClient, alchemy_session: Session, owner: User
) -> None:
    owner.is_active = False
    alchemy_session.commit()

    response = client.post(f"{API}/users/{owner.id}/items/", json={"title": "Tea"})

    assert response.status_code == 400
    assert response.json() == {"detail": "Inactive user"}


@pytest.mark.parametrize(
    "body",
    [{"title": ""}, {"title": "Tea", "price_cents": -1}, {"description": "no title"}],
    ids=["empty title", "negative price", "no title"],
)
def test_invalid_items_are_422(
    client: TestClient, alchemy_session: Session, owner: User, body: dict[str, object]
) -> None:
    response = client.post(f"{API}/users/{owner.id}/items/", json=body)

    assert response.status_code == 422
    assert alchemy_session.exec(select(Item)).all() == []


def test_list_items(client: TestClient, alchemy_session: Session, owner: User) -> None:
    for title in ("Tea", "Coffee", "Cocoa"):
        add_item(alchemy_session, owner, title)

    body = client.get(f"{API}/items/", params={"limit": 2}).json()

    assert body["count"] == 3
    assert [item["title"] for item in body["data"]] == ["Cocoa", "Coffee"]


def test_read_item(client: TestClient, alchemy_session: Session, owner: User) -> None:
    item = add_item(alchemy_session, owner, "Tea", 450)

    response = client.get(f"{API}/items/{item.id}")

    assert response.status_code == 200
    assert response.json() == {
        "id": str(item.id),
        "owner_id": str(owner.id),
        "title": "Tea",
        "description": None,
        "price_cents": 450,
    }


def test_unknown_item_is_404(client: TestClient) -> None:
    response = client.get(f"{API}/items/{uuid.uuid4()}")

    assert response.status_code == 404
    assert response.json() == {"detail": "Item not found"}


def test_update_item(client: TestClient, alchemy_session: Session, owner: User) -> None:
    item = add_item(alchemy_session, owner, "Tea", 450)

    response = client.patch(f"{API}/items/{item.id}", json={"price_cents": 500})

    assert response.status_code == 200
    alchemy_session.refresh(item)
    assert (item.title, item.price_cents) == ("Tea", 500)


def test_delete_item_keeps_its_owner(
    client: TestClient, alchemy_session: Session, owner: User
) -> None:
    item_id = add_item(alchemy_session, owner, "Tea").id

    response = client.delete(f"{API}/items/{item_id}")

    assert response.status_code == 200
    alchemy_session.expire_all()
    assert alchemy_session.get(Item, item_id) is None
    assert alchemy_session.get(User, owner.id) is not None
    assert client.delete(f"{API}/items/{item_id}").status_code == 404
