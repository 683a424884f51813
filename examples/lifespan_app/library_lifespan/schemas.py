"""Request and response bodies."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class AuthorCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)


class AuthorRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str


class BookCreate(BaseModel):
    isbn: str = Field(min_length=10, max_length=17)
    title: str = Field(min_length=1, max_length=200)
    author_id: int
    copies: int = Field(default=1, ge=0)


class BookUpdate(BaseModel):
    title: str | None = Field(default=None, min_length=1, max_length=200)
    copies: int | None = Field(default=None, ge=0)


class BookRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    isbn: str
    title: str
    author_id: int
    copies: int
    times_borrowed: int


class LoanCreate(BaseModel):
    member: str = Field(min_length=1, max_length=100)


class LoanRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    book_id: int
    member: str
    borrowed_at: datetime
    returned_at: datetime | None
