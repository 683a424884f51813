"""The configuration checks that need no connection, made once before any test runs.

A metadata path that does not import, an app session path that does not
resolve, a backend pytest-alchemy does not support, a driver that is missing:
each would fail every database test the same way, and only after a throwaway
server was started for nothing. The plugin runs :func:`check` once, when the
collected tests include one that needs the database, and stops the run with
the first problem found; a run of tests that need none is never stopped by them.

What a ``conftest.py`` overrides (the ``alchemy_url`` or ``alchemy_metadata``
fixture) is not checked here: the fixture's value is only known when it is set up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .binding import resolve
from .plan import plan_database, source_url
from .provision.connector import ADMIN_PURPOSE
from .schema import import_object
from .settings import Settings
from .urls import (
    ASYNC_PURPOSE,
    SYNC_PURPOSE,
    async_url,
    require_async_stack,
    require_driver,
    sync_url,
)


@dataclass(frozen=True)
class Checks:
    """Which checks apply to this run."""

    url: bool = True
    """The URL is the settings' (no conftest overrides the ``alchemy_url`` fixture)."""
    metadata: bool = True
    """The metadata is the settings' (no conftest overrides ``alchemy_metadata``)."""
    sync: bool = True
    """Some test needs a sync connection."""
    asynchronous: bool = False
    """Some test needs an async connection."""


def check(settings: Settings, checks: Checks, *, embedded: Path) -> None:
    """Raise the :class:`~pytest_alchemy.errors.ConfigurationError` of the first problem."""
    if checks.url:
        _check_url(settings, checks, embedded)
    if checks.metadata and settings.metadata is not None:
        import_object(settings.metadata, "alchemy_metadata")
    resolve(settings.app_sessions, settings.overrides, shared=settings.shares_sessions)


def _check_url(settings: Settings, checks: Checks, embedded: Path) -> None:
    url = source_url(settings, server=None, embedded=embedded)
    # The backend first: a driver is worth asking for only where the backend is supported.
    plan_database(settings, url, worker=None)
    target = None
    if settings.server is not None:
        target = (
            f"the throwaway {settings.server} server (alchemy_server from "
            f"{settings.source('server')})"
        )
    require_driver(url, target=target)
    if sync_url(url, required=False, purpose=ADMIN_PURPOSE, target=target) is None:
        # An async-only URL without a sync twin: its own driver provisions, on a loop.
        async_url(url, purpose=ADMIN_PURPOSE, target=target)
        require_async_stack(ADMIN_PURPOSE)
    if checks.sync:
        sync_url(url, purpose=SYNC_PURPOSE, target=target)
    if checks.asynchronous:
        require_async_stack(ASYNC_PURPOSE)
        async_url(url, target=target)
