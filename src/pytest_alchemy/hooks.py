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

    Called once per build, after the database is created and ``alchemy_init_sql``
    ran, in one transaction on ``connection``. Return any value other than None to
    say the schema is built. With the template cache (the default) a build happens
    only when the fingerprint changed; other runs copy the template instead.
    """


@pytest.hookspec(firstresult=True)
def pytest_alchemy_schema_fingerprint(config: pytest.Config) -> str | None:
    """Return a string that changes whenever the hook's schema changes.

    With it, the template cache and ``reuse_db`` can copy or reuse a database built
    by the hook. Returning None (or not implementing this hook) means the schema
    cannot be known in advance: it is built every run, no template is kept, and the
    summary says so.
    """


@pytest.hookspec
def pytest_alchemy_seed(connection: Connection) -> None:
    """Write the app's seed rows, once per run, after the schema is built.

    Called in one transaction on ``connection`` to the new test database, which is
    committed afterwards; every test then starts from these rows (they are the leak
    check's baseline, and each test's changes to them are rolled back). Runs every
    run, after the database is copied from its template, unless
    ``alchemy_seed_in_template = true`` makes the rows part of the template (then
    the source of this hook joins the fingerprint). ``alchemy_seed`` names a
    seeding function instead, without a conftest.
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
