"""Which tests get the per-test cycle without asking for it, decided at collection.

A test that requests ``alchemy_session`` (or another cycle fixture) is inside its
isolation by that request. Tests marked ``alchemy_db``, and tests that reach the
database only through ``alchemy_database`` or ``alchemy_engine`` (an app engine
made from its URL, say), get the fixture that opens the cycle added to their
fixture list at collection: what they commit is then checked and put back like
everything else. Every other test pays nothing, not even an autouse fixture.

:func:`needs_of` tells from the selected tests whether the run needs the database
at all, and sync or async connections, so that the checks made before any test
runs apply only to runs they concern.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import pytest

from . import markers

CYCLE_FIXTURES = frozenset(
    {
        "alchemy_connection",
        "alchemy_session",
        "alchemy_sessionmaker",
        "alchemy_async_connection",
        "alchemy_async_session",
        "alchemy_async_sessionmaker",
        "alchemy_async_engine",
        "alchemy_bind",
        "alchemy_async_bind",
        "alchemy_override",
        "alchemy_async_override",
    }
)
"""Fixtures that put the test inside its isolation (and its leak check) by themselves."""

DATABASE_FIXTURES = frozenset({"alchemy_database", "alchemy_engine", "alchemy_flask_app"})
"""Session fixtures that reach the test database: a test using them gets the cycle too."""

SYNC_TEST = "_alchemy_sync_test"
"""The fixture that runs a sync test's cycle."""
IMPLICIT = "_alchemy_implicit"
"""The fixture that has an async test's cycle opened on its event loop."""


SYNC_CONTEXT = "_alchemy_sync_context"
ASYNC_CONTEXT = "_alchemy_context"
LAYER_LINKS = frozenset({SYNC_CONTEXT, ASYNC_CONTEXT})
"""The session contexts the layers of seed data depend on (the cycles' own are added
to a test at collection, after this is decided)."""

DATABASE_ACCESS = CYCLE_FIXTURES | DATABASE_FIXTURES | {SYNC_TEST, IMPLICIT}
"""Fixtures that give a test the database: with none of them (or the marker) it is blocked."""


def uses_database(item: pytest.Item) -> bool:
    """Whether ``item`` may use the database: it is marked, or requests a database fixture
    (also through another fixture it requests)."""
    if item.get_closest_marker(markers.NAME) is not None:
        return True
    return not DATABASE_ACCESS.isdisjoint(getattr(item, "fixturenames", ()))


def is_async_function(item: pytest.Item) -> bool:
    function = getattr(item, "obj", None)
    return inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)


def needs_implicit_cycle(item: pytest.Item, names: list[str]) -> bool:
    """Whether a test needs the cycle without having requested a fixture that starts it.

    A layer of seed data (``@pytest_alchemy.layer``) depends on a cycle's session
    context: a test requesting one (directly or through another fixture) runs inside it.
    """
    if not CYCLE_FIXTURES.isdisjoint(names) or SYNC_TEST in names or IMPLICIT in names:
        return False
    return (
        item.get_closest_marker(markers.NAME) is not None
        or not DATABASE_FIXTURES.isdisjoint(names)
        or not LAYER_LINKS.isdisjoint(names)
    )


def with_cycle_fixture(item: pytest.Item, names: list[str]) -> list[str] | None:
    """The test's fixtures plus the one that opens its cycle, when it needs it; else None."""
    if not needs_implicit_cycle(item, names):
        return None
    return [*names, IMPLICIT if is_async_function(item) else SYNC_TEST]


DATABASE_LINKS = frozenset(
    {*CYCLE_FIXTURES, *DATABASE_FIXTURES, SYNC_TEST, IMPLICIT, SYNC_CONTEXT, ASYNC_CONTEXT}
    | {"_alchemy_run", "_alchemy_enabled"}
)
"""Fixtures whose use means the test needs the database (directly or through a fixture)."""


@dataclass(frozen=True)
class Needs:
    """What the collected tests need of the database, decided without connecting."""

    database: bool = False
    sync: bool = False
    """Some test runs on a sync connection (a sync cycle, or ``alchemy_engine``)."""
    asynchronous: bool = False
    """Some test runs on an async connection."""


def needs_of(items: list[pytest.Item]) -> Needs:
    """What ``items`` (after :func:`with_cycle_fixture`) need of the database."""
    database = sync = asynchronous = False
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker(markers.NAME) is None and names.isdisjoint(DATABASE_LINKS):
            continue
        database = True
        sync = sync or not names.isdisjoint({SYNC_TEST, SYNC_CONTEXT, "alchemy_engine"})
        asynchronous = asynchronous or not names.isdisjoint({IMPLICIT, ASYNC_CONTEXT})
    return Needs(database, sync, asynchronous)
