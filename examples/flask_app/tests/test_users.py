"""Signing up, listing and fetching users; a taken name is a conflict (409)."""

from __future__ import annotations

from blog_app import db
from blog_app.models import User
from flask.testing import FlaskClient

from .api import sign_up


def test_sign_up_commits_the_user(client: FlaskClient) -> None:
    response = client.post("/users", json={"username": "ada", "email": "ada@example.com"})

    assert response.status_code == 201
    assert response.json["username"] == "ada"
    assert User.query.filter_by(username="ada").one().email == "ada@example.com"


def test_users_are_listed_by_name(client: FlaskClient) -> None:
    for name in ("grace", "ada", "linus"):
        sign_up(client, name)

    assert [user["username"] for user in client.get("/users").json] == ["ada", "grace", "linus"]


def test_a_user_added_in_the_test_is_seen_by_the_views(client: FlaskClient) -> None:
    db.session.add(User(username="ada", email="ada@example.com"))
    db.session.commit()

    assert [user["username"] for user in client.get("/users").json] == ["ada"]


def test_fetching_a_user_counts_their_posts(client: FlaskClient) -> None:
    user_id = sign_up(client, "ada")
    client.post("/posts", json={"author_id": user_id, "title": "Notes"})

    assert client.get(f"/users/{user_id}").json == {
        "id": user_id,
        "username": "ada",
        "email": "ada@example.com",
        "posts": 1,
    }


def test_an_unknown_user_is_404(client: FlaskClient) -> None:
    response = client.get("/users/4242")

    assert response.status_code == 404
    assert response.json == {"error": "no such user"}


def test_a_missing_field_is_400(client: FlaskClient) -> None:
    response = client.post("/users", json={"username": "ada"})

    assert response.status_code == 400
    assert response.json == {"error": "missing: email"}
    assert User.query.count() == 0


def test_a_taken_username_is_409_and_the_test_goes_on(client: FlaskClient) -> None:
    """The view's rollback after the IntegrityError undoes its own insert only: the
    user committed before it is still there, and later requests commit again."""
    sign_up(client, "ada")

    taken = client.post("/users", json={"username": "ada", "email": "other@example.com"})

    assert taken.status_code == 409
    assert taken.json == {"error": "username or email already taken"}
    sign_up(client, "grace")
    assert [user["username"] for user in client.get("/users").json] == ["ada", "grace"]


def test_a_taken_email_is_409_again_and_again(client: FlaskClient) -> None:
    sign_up(client, "ada", "ada@example.com")
    for name in ("ada2", "ada3", "ada4"):
        response = client.post("/users", json={"username": name, "email": "ada@example.com"})
        assert response.status_code == 409

    assert db.session.execute(db.select(db.func.count(User.id))).scalar() == 1
