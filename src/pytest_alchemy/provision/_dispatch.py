"""The registry of backends, keyed by SQLAlchemy backend name.

Filled once at import; adding a backend is one module and one line here.
"""

from __future__ import annotations

from sqlalchemy.engine import URL

from ..errors import ConfigurationError, message
from ..settings import render_url
from .base import Backend, Guard
from .postgresql import PostgreSQLBackend
from .sqlite import SQLiteBackend

BACKENDS: dict[str, type[Backend]] = {
    "postgresql": PostgreSQLBackend,
    "sqlite": SQLiteBackend,
}


def backend_for(url: URL, guard: Guard, *, lock_timeout: float) -> Backend:
    name = url.get_backend_name()
    cls = BACKENDS.get(name)
    if cls is None:
        supported = ", ".join(sorted(BACKENDS))
        raise ConfigurationError(
            message(
                f"the URL {render_url(url)} is for {name!r}, which pytest-alchemy does not "
                f"support yet. Supported backends: {supported}."
            )
        )
    return cls(url, guard, lock_timeout=lock_timeout)
