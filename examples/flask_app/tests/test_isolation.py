"""Nothing crosses from one test to the next, whoever wrote it.

The views commit for real as far as they can tell; inside a test their commits are
savepoints of the test's transaction, which is rolled back when the test ends.
"""

from __future__ import annotations

import pytest
from blog_app import db
from blog_app.models import Comment, Post, User
from flask.testing import FlaskClient

from .api import sign_up, write


def count(model: type[db.Model]) -> int:
    return int(db.session.execute(db.select(db.func.count()).select_from(model)).scalar_one())


def test_a_writes_through_the_views(client: FlaskClient) -> None:
    ada = sign_up(client, "ada")
    post_id = write(client, ada, "Hello")
    client.post(f"/posts/{post_id}/publish")
    client.post(f"/posts/{post_id}/comments", json={"author_id": ada, "body": "First!"})

    assert (count(User), count(Post), count(Comment)) == (1, 1, 1)


def test_b_the_next_test_sees_nothing(client: FlaskClient) -> None:
    assert (count(User), count(Post), count(Comment)) == (0, 0, 0)
    assert client.get("/users").json == []
    assert client.get("/posts").json == []


@pytest.mark.parametrize("turn", [1, 2, 3])
def test_the_same_user_in_every_test(client: FlaskClient, turn: int) -> None:
    """Whatever order these run in, each starts without the others' user."""
    sign_up(client, "ada")

    assert len(client.get("/users").json) == 1


def test_the_test_and_the_views_share_one_transaction(client: FlaskClient) -> None:
    db.session.add(User(username="ada", email="ada@example.com"))
    db.session.flush()  # not even committed: the views see it all the same

    assert [user["username"] for user in client.get("/users").json] == ["ada"]
