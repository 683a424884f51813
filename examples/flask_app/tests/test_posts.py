"""Writing, publishing, listing and deleting posts."""

from __future__ import annotations

from blog_app import db
from blog_app.models import Comment, Post
from flask.testing import FlaskClient

from .api import sign_up, write


def test_a_new_post_is_a_draft(client: FlaskClient) -> None:
    ada = sign_up(client, "ada")

    response = client.post("/posts", json={"author_id": ada, "title": "Hello", "body": "Hi."})

    assert response.status_code == 201
    assert response.json["published"] is False
    assert client.get("/posts").json == [], "drafts are not listed"
    assert db.session.get(Post, response.json["id"]).body == "Hi."


def test_publishing_commits_and_lists_the_post(client: FlaskClient) -> None:
    ada = sign_up(client, "ada")
    post_id = write(client, ada, "Hello")

    response = client.post(f"/posts/{post_id}/publish")

    assert response.status_code == 200
    assert response.json["published"] is True
    assert db.session.get(Post, post_id).published is True
    assert [post["title"] for post in client.get("/posts").json] == ["Hello"]


def test_posts_are_listed_newest_first(client: FlaskClient) -> None:
    ada = sign_up(client, "ada")
    for title in ("first", "second", "third"):
        client.post(f"/posts/{write(client, ada, title)}/publish")

    assert [post["title"] for post in client.get("/posts").json] == ["third", "second", "first"]


def test_posts_of_one_category(client: FlaskClient) -> None:
    ada = sign_up(client, "ada")
    for title, category in (("v1.0 is out", "releases"), ("We moved", "news")):
        client.post(f"/posts/{write(client, ada, title, category=category)}/publish")

    listed = client.get("/posts?category=releases").json

    assert [(post["title"], post["category"]) for post in listed] == [("v1.0 is out", "releases")]


def test_an_unknown_category_is_404(client: FlaskClient) -> None:
    ada = sign_up(client, "ada")

    assert client.get("/posts?category=gossip").status_code == 404
    response = client.post("/posts", json={"author_id": ada, "title": "x", "category": "gossip"})
    assert response.status_code == 404
    assert response.json == {"error": "no category 'gossip'"}
    assert Post.query.count() == 0


def test_a_post_by_an_unknown_author_is_404(client: FlaskClient) -> None:
    response = client.post("/posts", json={"author_id": 4242, "title": "Hello"})

    assert response.status_code == 404
    assert response.json == {"error": "no such user"}


def test_an_unknown_post_is_404(client: FlaskClient) -> None:
    assert client.get("/posts/4242").status_code == 404
    assert client.post("/posts/4242/publish").status_code == 404
    assert client.delete("/posts/4242").status_code == 404


def test_deleting_a_post_deletes_its_comments(client: FlaskClient) -> None:
    ada = sign_up(client, "ada")
    post_id = write(client, ada, "Hello")
    client.post(f"/posts/{post_id}/comments", json={"author_id": ada, "body": "First!"})

    response = client.delete(f"/posts/{post_id}")

    assert response.status_code == 204
    assert client.get(f"/posts/{post_id}").status_code == 404
    assert db.session.execute(db.select(Comment)).scalars().all() == []
