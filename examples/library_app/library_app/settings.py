"""The app's settings, read from the environment once, when the app is imported.

``DATABASE_URL`` names the database; without it the app uses the local development
database. Alembic's ``migrations/env.py`` and ``db.py`` both read it from here, so
whatever sets ``DATABASE_URL`` before the app is imported decides where the app and
its migrations go (the tests: ``alchemy_env = DATABASE_URL`` in ``pyproject.toml``).
"""

from __future__ import annotations

import os

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql+psycopg://localhost/library")
"""Where the app's data lives."""

TOKEN_BYTES = 32
"""Length of the login tokens, in random bytes."""

PASSWORD_ITERATIONS = int(os.environ.get("PASSWORD_ITERATIONS", "100000"))
"""PBKDF2 iterations for the stored password hashes."""
