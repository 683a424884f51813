"""The tables: authors write books, and members borrow books as loans.

Relationships are ``lazy="raise"``: under asyncio a lazy load cannot run
implicitly, so a forgotten eager load fails loudly instead of at some later
``await``.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)

    books: Mapped[list[Book]] = relationship(back_populates="author", lazy="raise")


class Book(Base):
    __tablename__ = "books"
    __table_args__ = (CheckConstraint("copies >= 0", name="ck_books_copies"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    isbn: Mapped[str] = mapped_column(String(17), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"), index=True)
    copies: Mapped[int] = mapped_column(default=1)
    times_borrowed: Mapped[int] = mapped_column(default=0)

    author: Mapped[Author] = relationship(back_populates="books", lazy="raise")
    loans: Mapped[list[Loan]] = relationship(back_populates="book", lazy="raise")


class Loan(Base):
    __tablename__ = "loans"

    id: Mapped[int] = mapped_column(primary_key=True)
    book_id: Mapped[int] = mapped_column(ForeignKey("books.id"), index=True)
    member: Mapped[str] = mapped_column(String(100))
    borrowed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    returned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    book: Mapped[Book] = relationship(back_populates="loans", lazy="raise")
