"""Alembic's environment: the migrations run on the app's own engine.

Like many real apps, this env.py takes its database from the app's settings
(``DATABASE_URL``, read when ``library_app`` is imported) and nothing else. In the
tests ``alchemy_env = DATABASE_URL`` points that variable at the test database before
the app is imported, so the migrations land there.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from library_app.db import engine
from library_app.models import Base
from library_app.settings import DATABASE_URL

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def run_migrations_offline() -> None:
    """``alembic upgrade head --sql``: the SQL, for the app's database."""
    context.configure(url=DATABASE_URL, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
