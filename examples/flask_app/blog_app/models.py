"""Users write posts in a category; users comment on posts.

The tables are made by the migrations in ``migrations/versions/``, not by
``db.create_all()``: these classes must agree with them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ForeignKey, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from . import db


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(40), unique=True)
    email: Mapped[str] = mapped_column(String(120), unique=True)

    posts: Mapped[list[Post]] = relationship(back_populates="author")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "username": self.username, "email": self.email}


class Category(db.Model):
    """Filled by the migration that made the table: every database has the same ones."""

    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(80))

    def to_dict(self) -> dict[str, Any]:
        return {"slug": self.slug, "name": self.name}


class Post(db.Model):
    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    published: Mapped[bool] = mapped_column(default=False, server_default=false())

    author: Mapped[User] = relationship(back_populates="posts")
    category: Mapped[Category | None] = relationship()
    comments: Mapped[list[Comment]] = relationship(
        back_populates="post", cascade="all, delete-orphan", order_by="Comment.id"
    )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "body": self.body,
            "author": self.author.username,
            "category": self.category.slug if self.category else None,
            "published": self.published,
            "comments": len(self.comments),
        }


class Comment(db.Model):
    __tablename__ = "comments"

    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)

    post: Mapped[Post] = relationship(back_populates="comments")
    author: Mapped[User] = relationship()

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "author": self.author.username, "body": self.body}
