"""The registry of backends, keyed by SQLAlchemy backend name.

A backend is two classes: its :class:`~pytest_alchemy.provision.Provisioner`
(test databases, once per run) and its
:class:`~pytest_alchemy.checks.SessionChecks` (connections, around every test).
They are named here by import path and loaded on first use, so that knowing
which backends exist imports no driver. Adding a backend is one provisioning
module, one checks module and one entry in :data:`BACKENDS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, message

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from ..checks import SessionChecks
    from .base import Provisioner


@dataclass(frozen=True)
class BackendPaths:
    """Where one backend's two halves are, as ``module:Class``."""

    provisioner: str
    checks: str


def _load(path: str) -> Any:
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


class Backends(Mapping[str, BackendPaths]):
    """Backends by name; a name can be given once only."""

    def __init__(self, entries: Mapping[str, BackendPaths]) -> None:
        self._entries: dict[str, BackendPaths] = {}
        for name, paths in entries.items():
            self.add(name, paths)

    def add(self, name: str, paths: BackendPaths) -> None:
        if name in self._entries:
            raise ConfigurationError(
                message(
                    f"the backend {name!r} is registered twice: {self._entries[name].provisioner} "
                    f"and {paths.provisioner}. Give each backend its own name."
                )
            )
        self._entries[name] = paths

    def __getitem__(self, name: str) -> BackendPaths:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def provisioner_class(self, name: str) -> type[Provisioner]:
        found: type[Provisioner] = _load(self[name].provisioner)
        return found

    def checks_class(self, name: str) -> type[SessionChecks]:
        found: type[SessionChecks] = _load(self[name].checks)
        return found


BACKENDS = Backends(
    {
        "postgresql": BackendPaths(
            "pytest_alchemy.provision.postgresql:PostgreSQLProvisioner",
            "pytest_alchemy.checks.postgresql:PostgreSQLChecks",
        ),
        "sqlite": BackendPaths(
            "pytest_alchemy.provision.sqlite:SQLiteProvisioner",
            "pytest_alchemy.checks.sqlite:SQLiteChecks",
        ),
    }
)
"""Every backend pytest-alchemy supports, filled once at import."""


def provisioner_for(
    url: URL, prefix: str, *, lock_timeout: float, connect_timeout: float = 10.0
) -> Provisioner:
    """The provisioner of ``url``'s backend, or a clear error when it is not supported."""
    from ..urls import render_url

    name = url.get_backend_name()
    if name not in BACKENDS:
        supported = ", ".join(sorted(BACKENDS))
        raise ConfigurationError(
            message(
                f"the URL {render_url(url)} is for {name!r}, which pytest-alchemy does not "
                f"support yet. Supported backends: {supported}."
            )
        )
    return BACKENDS.provisioner_class(name)(
        url, prefix, lock_timeout=lock_timeout, connect_timeout=connect_timeout
    )
