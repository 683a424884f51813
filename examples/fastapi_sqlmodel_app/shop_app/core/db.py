"""The app's engine, and the seeding of a new database.

The engine is made once, at import, from ``settings.DATABASE_URL``. Requests get
their sessions from ``shop_app.api.deps.get_db``.
"""

from __future__ import annotations

from sqlmodel import Session, create_engine, select

from shop_app import crud
from shop_app.core.config import settings
from shop_app.models import User, UserCreate

engine = create_engine(str(settings.DATABASE_URL))


def init_db(session: Session) -> None:
    """Create the first superuser, unless it exists already."""
    user = session.exec(select(User).where(User.email == settings.FIRST_SUPERUSER)).first()
    if user is None:
        user_in = UserCreate(
            email=settings.FIRST_SUPERUSER,
            password=settings.FIRST_SUPERUSER_PASSWORD,
            full_name="Administrator",
            is_superuser=True,
        )
        crud.create_user(session=session, user_create=user_in)
