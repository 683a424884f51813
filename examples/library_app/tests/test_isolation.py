"""Nothing a test writes reaches the next test; the layer's rows last for its module."""

from __future__ import annotations

from fastapi.testclient import TestClient
from library_app.models import Article, Token, User
from sqlalchemy import func, select
from sqlalchemy.orm import Session


def count(session: Session, model: type[object]) -> int | None:
    return session.scalar(select(func.count()).select_from(model))


def test_other_modules_layers_are_undone(alchemy_session: Session) -> None:
    # test_articles.py and test_users.py signed up users in their layers.
    assert count(alchemy_session, User) == 0
    assert count(alchemy_session, Token) == 0


def test_a_test_writes_an_article(
    client: TestClient, auth: dict[str, str], alchemy_session: Session
) -> None:
    response = client.post(
        "/articles", json={"title": "Left behind?", "body": "no", "published": True}, headers=auth
    )

    assert response.status_code == 201
    assert count(alchemy_session, Article) == 1


def test_the_next_test_does_not_see_it(
    client: TestClient, auth: dict[str, str], alchemy_session: Session
) -> None:
    assert client.get("/articles").json() == []
    assert count(alchemy_session, Article) == 0
    assert count(alchemy_session, User) == 1, "the module's logged-in user is still there"
