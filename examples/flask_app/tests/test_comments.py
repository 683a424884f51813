"""Comments on posts."""

from __future__ import annotations

from blog_app.models import Comment
from flask.testing import FlaskClient

from .api import sign_up, write


def test_commenting_on_a_post(client: FlaskClient) -> None:
    ada, grace = sign_up(client, "ada"), sign_up(client, "grace")
    post_id = write(client, ada, "Hello")

    response = client.post(f"/posts/{post_id}/comments", json={"author_id": grace, "body": "Hi!"})

    assert response.status_code == 201
    assert response.json["author"] == "grace"
    assert Comment.query.one().post_id == post_id


def test_comments_are_listed_in_order_and_counted(client: FlaskClient) -> None:
    ada, grace = sign_up(client, "ada"), sign_up(client, "grace")
    post_id = write(client, ada, "Hello")
    for author, body in ((grace, "one"), (ada, "two"), (grace, "three")):
        client.post(f"/posts/{post_id}/comments", json={"author_id": author, "body": body})

    listed = client.get(f"/posts/{post_id}/comments").json

    assert [(c["author"], c["body"]) for c in listed] == [
        ("grace", "one"),
        ("ada", "two"),
        ("grace", "three"),
    ]
    assert client.get(f"/posts/{post_id}").json["comments"] == listed


def test_a_comment_on_an_unknown_post_is_404(client: FlaskClient) -> None:
    ada = sign_up(client, "ada")

    response = client.post("/posts/4242/comments", json={"author_id": ada, "body": "Hi!"})

    assert response.status_code == 404
    assert response.json == {"error": "no such post"}
    assert client.get("/posts/4242/comments").status_code == 404


def test_an_empty_comment_is_400(client: FlaskClient) -> None:
    ada = sign_up(client, "ada")
    post_id = write(client, ada, "Hello")

    response = client.post(f"/posts/{post_id}/comments", json={"author_id": ada, "body": ""})

    assert response.status_code == 400
    assert Comment.query.count() == 0
