"""Hooks a project can implement in its ``conftest.py``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.engine import Connection

    from .database import DatabaseInfo
    from .isolation.base import Strategy


@pytest.hookspec(firstresult=True)
def pytest_alchemy_create_schema(connection: Connection, database: DatabaseInfo) -> object:
    """Build the test database's schema (with ``alchemy_schema = hook``).

    Called once per run, after the database is created, in one transaction on
    ``connection``. Return any value other than None to say the schema is built.
    """


@pytest.hookspec(firstresult=True)
def pytest_alchemy_schema_fingerprint(config: pytest.Config) -> str | None:
    """Return a string that changes whenever the hook's schema changes.

    With it, ``reuse_db`` can reuse a database built by the hook; without it,
    such a database is rebuilt every run.
    """


@pytest.hookspec
def pytest_alchemy_isolation_strategies() -> Sequence[type[Strategy]]:
    """Return isolation strategies to offer besides the built-in ones.

    Called once at start-up (implement it in a plugin or the root ``conftest.py``).
    Each class subclasses :class:`pytest_alchemy.isolation.base.Strategy` and names
    itself with a ``name`` class attribute, which ``alchemy_isolation`` and
    ``@pytest.mark.alchemy_db(isolation=...)`` then accept. A name that is taken is
    an error naming both.
    """
    return ()
