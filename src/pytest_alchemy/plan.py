"""One plan for the database: which server, which test database, which backend.

The report header (before any connection), the ``alchemy_url`` fixture and the
set-up at the first database test all ask :func:`source_url` and
:func:`plan_database`, so they cannot disagree: the header names the very
database the run then creates, for each pytest-xdist worker its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import URL

from .provision import Provisioner, provisioner_for
from .urls import DEFAULT_DATABASE

if TYPE_CHECKING:
    from .settings import Settings

EMBEDDED_NAME = "alchemy.db"


def embedded_url(folder: Path) -> URL:
    """The embedded default: a SQLite file in ``folder`` (pytest's cache directory)."""
    return URL.create("sqlite", database=str(folder / EMBEDDED_NAME))


def source_url(settings: Settings, *, server: URL | None, embedded: Path) -> URL:
    """The URL the test database derives from: the configured one, the throwaway
    server's (``server``, its maintenance database; before it started, a stand-in of
    its kind), else the embedded SQLite file in the folder ``embedded``."""
    configured = settings.url
    if settings.server is not None:
        started = server or URL.create(settings.server)
        return started.set(
            drivername=configured.drivername if configured else started.drivername,
            database=(configured.database if configured else None) or DEFAULT_DATABASE,
        )
    if configured is not None:
        return configured
    return embedded_url(embedded)


@dataclass(frozen=True)
class DatabasePlan:
    """The test database a run uses, before anything is created."""

    provisioner: Provisioner
    name: str

    @property
    def url(self) -> URL:
        return self.provisioner.test_url(self.name)

    def describe(self) -> str:
        """The backend and the database, as the report names them."""
        return f"{self.provisioner.name} {self.provisioner.describe(self.name)}"


def plan_database(settings: Settings, url: URL, *, worker: str | None) -> DatabasePlan:
    """The test database ``url`` leads to, for the pytest-xdist ``worker`` (if any).

    Connects to nothing; an unsupported backend is a clear error.
    """
    provisioner = provisioner_for(
        url,
        settings.test_prefix,
        lock_timeout=settings.lock_timeout,
        connect_timeout=settings.connect_timeout,
    )
    return DatabasePlan(provisioner, provisioner.derive(settings.test_prefix, worker).name)
