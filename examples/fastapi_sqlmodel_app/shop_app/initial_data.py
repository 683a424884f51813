"""Create the tables and the first superuser in ``DATABASE_URL``.

Run it once before starting the app: ``python -m shop_app.initial_data``.
"""

from __future__ import annotations

from sqlmodel import Session, SQLModel

from shop_app.core.db import engine, init_db


def main() -> None:
    SQLModel.metadata.create_all(engine)
    with Session(engine) as session:
        init_db(session)
    print(f"database ready: {engine.url.render_as_string(hide_password=True)}")


if __name__ == "__main__":
    main()
