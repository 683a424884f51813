"""The JSON API: three blueprints, and errors answered as JSON.

The views use ``db.session`` as any Flask-SQLAlchemy app does: ``Model.query``,
``db.session.execute(db.select(...))``, ``db.get_or_404``, and ``db.session.commit()``
(or ``rollback()`` when the database refuses a row).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, abort, jsonify, request
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import HTTPException

from . import db
from .models import Category, Comment, Post, User

users = Blueprint("users", __name__, url_prefix="/users")
posts = Blueprint("posts", __name__, url_prefix="/posts")
categories = Blueprint("categories", __name__, url_prefix="/categories")


def errors(app: Flask) -> None:
    """Answer every HTTP error with ``{"error": description}``."""

    @app.errorhandler(HTTPException)
    def as_json(error: HTTPException) -> tuple[Any, int]:
        return jsonify(error=error.description), error.code or 500


def fields(*names: str) -> dict[str, Any]:
    """The named fields of the JSON body; 400 when one is missing or empty."""
    body = request.get_json(silent=True) or {}
    missing = [name for name in names if not body.get(name)]
    if missing:
        abort(400, description=f"missing: {', '.join(missing)}")
    return body


# -- users ------------------------------------------------------------------------------


@users.get("")
def list_users() -> Any:
    return jsonify([user.to_dict() for user in User.query.order_by(User.username)])


@users.post("")
def create_user() -> Any:
    body = fields("username", "email")
    user = User(username=body["username"], email=body["email"])
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        abort(409, description="username or email already taken")
    return jsonify(user.to_dict()), 201


@users.get("/<int:user_id>")
def get_user(user_id: int) -> Any:
    user = db.get_or_404(User, user_id, description="no such user")
    return jsonify({**user.to_dict(), "posts": len(user.posts)})


# -- categories -----------------------------------------------------------------------


@categories.get("")
def list_categories() -> Any:
    found = db.session.execute(db.select(Category).order_by(Category.slug)).scalars()
    return jsonify([category.to_dict() for category in found])


def category_of(slug: str) -> Category:
    return db.first_or_404(
        db.select(Category).filter_by(slug=slug), description=f"no category {slug!r}"
    )


# -- posts and their comments -----------------------------------------------------------


@posts.get("")
def list_posts() -> Any:
    """The published posts, newest first; ``?category=slug`` for one category."""
    query = db.select(Post).filter_by(published=True).order_by(Post.id.desc())
    slug = request.args.get("category")
    if slug:
        query = query.filter_by(category=category_of(slug))
    return jsonify([post.to_dict() for post in db.session.execute(query).scalars()])


@posts.post("")
def create_post() -> Any:
    body = fields("author_id", "title")
    author = db.get_or_404(User, body["author_id"], description="no such user")
    slug = body.get("category")
    post = Post(
        author=author,
        title=body["title"],
        body=body.get("body", ""),
        category=category_of(slug) if slug else None,
    )
    db.session.add(post)
    db.session.commit()
    return jsonify(post.to_dict()), 201


@posts.get("/<int:post_id>")
def get_post(post_id: int) -> Any:
    post = db.get_or_404(Post, post_id, description="no such post")
    return jsonify({**post.to_dict(), "comments": [c.to_dict() for c in post.comments]})


@posts.post("/<int:post_id>/publish")
def publish_post(post_id: int) -> Any:
    post = db.get_or_404(Post, post_id, description="no such post")
    post.published = True
    db.session.commit()
    return jsonify(post.to_dict())


@posts.delete("/<int:post_id>")
def delete_post(post_id: int) -> Any:
    post = db.get_or_404(Post, post_id, description="no such post")
    db.session.delete(post)  # its comments go with it
    db.session.commit()
    return "", 204


@posts.get("/<int:post_id>/comments")
def list_comments(post_id: int) -> Any:
    post = db.get_or_404(Post, post_id, description="no such post")
    return jsonify([comment.to_dict() for comment in post.comments])


@posts.post("/<int:post_id>/comments")
def add_comment(post_id: int) -> Any:
    post = db.get_or_404(Post, post_id, description="no such post")
    body = fields("author_id", "body")
    author = db.get_or_404(User, body["author_id"], description="no such user")
    comment = Comment(post=post, author=author, body=body["body"])
    db.session.add(comment)
    db.session.commit()
    return jsonify(comment.to_dict()), 201
