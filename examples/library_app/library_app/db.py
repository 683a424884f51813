"""The engine, the session factory and the ``get_db`` dependency, made at import time
from ``settings.DATABASE_URL``."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from .settings import DATABASE_URL

engine = create_engine(DATABASE_URL)
SessionLocal = sessionmaker(bind=engine, autoflush=False)


def get_db() -> Iterator[Session]:
    """One session per request, closed when the response is done."""
    db = SessionLocal()
    try:
        yield db
    finally:
        db.close()
