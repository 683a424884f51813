"""What the plugin keeps per pytest run, in ``config.stash`` (never in module globals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from .settings import Settings

if TYPE_CHECKING:
    from .fixtures import SessionContexts
    from .runtime import Run


@dataclass
class PluginState:
    settings: Settings
    aliases: dict[str, str] = field(default_factory=dict)
    """Option name -> the seed alias flag registered for it."""
    run: Run | None = None
    server: Any = None
    outcome: str = ""
    """What happened to the test database at the end (dropped, kept...)."""
    alembic_config: str | None = None
    reaped_servers: list[str] = field(default_factory=list)
    """Throwaway servers of dead runs stopped at start-up."""
    item: pytest.Item | None = None
    """The test being run, set before its fixtures: per-test fixtures read it here
    rather than through ``request``, which pytest rebuilds for every fixture asking."""
    contexts: SessionContexts | None = None
    """The object serving the session contexts of the per-test cycles."""


STASH = pytest.StashKey[PluginState]()
