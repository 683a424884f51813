"""The HTTP API: authors, their books, and the loans that lend copies out.

Run it with ``python -m library_lifespan.db`` (creates the tables) and then
``uvicorn library_lifespan.main:app``.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, Response, status
from sqlalchemy import exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from .db import get_db, lifespan
from .models import Author, Book, Loan, utcnow
from .schemas import (
    AuthorCreate,
    AuthorRead,
    BookCreate,
    BookRead,
    BookUpdate,
    LoanCreate,
    LoanRead,
)

app = FastAPI(title="Library API", lifespan=lifespan)

DB = Annotated[AsyncSession, Depends(get_db)]
Row = TypeVar("Row", Author, Book, Loan)


async def commit_or_conflict(session: AsyncSession, detail: str) -> None:
    """Commit, turning a unique-constraint violation into 409 Conflict."""
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, detail) from None


async def get_or_404(session: AsyncSession, model: type[Row], id_: int) -> Row:
    row = await session.get(model, id_)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{model.__name__.lower()} {id_} not found")
    return row


# -- authors ---------------------------------------------------------------------------


@app.post("/authors", response_model=AuthorRead, status_code=status.HTTP_201_CREATED)
async def create_author(body: AuthorCreate, session: DB) -> Author:
    author = Author(name=body.name.strip())
    session.add(author)
    await commit_or_conflict(session, f"author {author.name!r} already exists")
    return author


@app.get("/authors", response_model=list[AuthorRead])
async def list_authors(session: DB) -> list[Author]:
    result = await session.execute(select(Author).order_by(Author.name))
    return list(result.scalars())


@app.get("/authors/{author_id}", response_model=AuthorRead)
async def read_author(author_id: int, session: DB) -> Author:
    return await get_or_404(session, Author, author_id)


@app.get("/authors/{author_id}/books", response_model=list[BookRead])
async def list_books_of(author_id: int, session: DB) -> list[Book]:
    await get_or_404(session, Author, author_id)
    result = await session.execute(
        select(Book).where(Book.author_id == author_id).order_by(Book.title)
    )
    return list(result.scalars())


# -- books -----------------------------------------------------------------------------


@app.post("/books", response_model=BookRead, status_code=status.HTTP_201_CREATED)
async def create_book(body: BookCreate, session: DB) -> Book:
    await get_or_404(session, Author, body.author_id)
    book = Book(**body.model_dump())
    session.add(book)
    await commit_or_conflict(session, f"a book with isbn {book.isbn} already exists")
    return book


@app.get("/books", response_model=list[BookRead])
async def list_books(session: DB) -> list[Book]:
    result = await session.execute(select(Book).order_by(Book.title))
    return list(result.scalars())


@app.get("/books/{book_id}", response_model=BookRead)
async def read_book(book_id: int, session: DB) -> Book:
    return await get_or_404(session, Book, book_id)


@app.patch("/books/{book_id}", response_model=BookRead)
async def update_book(book_id: int, body: BookUpdate, session: DB) -> Book:
    book = await get_or_404(session, Book, book_id)
    for field, value in body.model_dump(exclude_unset=True).items():
        setattr(book, field, value)
    await session.commit()
    return book


@app.delete("/books/{book_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_book(book_id: int, session: DB) -> Response:
    book = await get_or_404(session, Book, book_id)
    if await session.scalar(select(exists().where(Loan.book_id == book_id))):
        raise HTTPException(status.HTTP_409_CONFLICT, f"book {book_id} has loans")
    await session.delete(book)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- loans -----------------------------------------------------------------------------


async def count_loan(session: AsyncSession, book_id: int) -> None:
    """After the response: add the loan to the book's statistics."""
    await session.execute(
        update(Book).where(Book.id == book_id).values(times_borrowed=Book.times_borrowed + 1)
    )
    await session.commit()


@app.post("/books/{book_id}/loans", response_model=LoanRead, status_code=status.HTTP_201_CREATED)
async def borrow_book(book_id: int, body: LoanCreate, session: DB, tasks: BackgroundTasks) -> Loan:
    book = await get_or_404(session, Book, book_id)
    on_loan = await session.scalar(
        select(func.count())
        .select_from(Loan)
        .where(Loan.book_id == book_id, Loan.returned_at.is_(None))
    )
    if (on_loan or 0) >= book.copies:
        raise HTTPException(status.HTTP_409_CONFLICT, f"no copy of book {book_id} is available")
    loan = Loan(book_id=book_id, member=body.member)
    session.add(loan)
    await session.commit()
    tasks.add_task(count_loan, session, book_id)
    return loan


@app.get("/loans", response_model=list[LoanRead])
async def list_loans(session: DB, active: bool = False) -> list[Loan]:
    query = select(Loan).order_by(Loan.id)
    if active:
        query = query.where(Loan.returned_at.is_(None))
    result = await session.execute(query)
    return list(result.scalars())


@app.post("/loans/{loan_id}/return", response_model=LoanRead)
async def return_loan(loan_id: int, session: DB) -> Loan:
    loan = await get_or_404(session, Loan, loan_id)
    if loan.returned_at is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"loan {loan_id} was already returned")
    loan.returned_at = utcnow()
    await session.commit()
    return loan
