"""The engine, the session factory and the ``get_db`` dependency.

The database comes from the ``DATABASE_URL`` environment variable (a local
SQLite file by default). Every request gets its own session from
``SessionLocal``; tests never touch this engine, because pytest-alchemy binds
``SessionLocal`` to each test's connection (``alchemy_app_sessions`` in
``pyproject.toml``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite:///./todo.db")

engine = create_engine(DATABASE_URL)
SessionLocal = sessionmaker(bind=engine, autoflush=False)


def get_db() -> Iterator[Session]:
    """One session per request, closed when the response is done."""
    db = SessionLocal()
    try:
        yield db
    finally:
        db.close()


def create_tables() -> None:
    """Create the tables in the ``DATABASE_URL`` database (``python -m todo_app.db``)."""
    from .models import Base

    Base.metadata.create_all(engine)


if __name__ == "__main__":
    create_tables()
    print(f"tables created in {engine.url.render_as_string(hide_password=True)}")
