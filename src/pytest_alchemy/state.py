"""What the plugin keeps per pytest run, in ``config.stash`` (never in module globals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .appenv import AppEnvironment, Prepared
from .settings import Settings

if TYPE_CHECKING:
    from .alembic_schema import AlembicLocation
    from .blocker import Blocker
    from .isolation import Strategies
    from .runtime import Run
    from .servers import ThrowawayServer


@dataclass
class PluginState:
    settings: Settings
    strategies: Strategies
    """The isolation strategies of the run: the built-in ones and those hooks added."""
    blocker: Blocker
    """The database blocker (blocking only with ``alchemy_block_unmarked``)."""
    run: Run | None = None
    """The provisioned test database, once a test needed it; read by the summary."""
    outcome: str = ""
    """What happened to the test database at the end (dropped, kept...)."""
    alembic_config: AlembicLocation | None = None
    """The project's Alembic configuration, when one is found (or set)."""
    reaped_servers: list[str] = field(default_factory=list)
    """Throwaway servers of dead runs stopped at start-up."""
    used_isolation: frozenset[str] = frozenset()
    """The strategies the collected tests use by their markers or the settings (the
    ``alchemy_isolation`` fixture may name others), for those that prepare ahead."""
    server_cache: Path | None = None
    """With reuse_db and a throwaway server: the folder in pytest's cache that keeps its data."""
    server: ThrowawayServer | None = None
    """The throwaway server of the run, once a test needed it."""


STASH = pytest.StashKey[PluginState]()


APP_ENV = pytest.StashKey[Prepared]()
"""With ``alchemy_env``: the variables set for the app before the initial conftests."""


def app_environment(config: pytest.Config) -> AppEnvironment | None:
    """The variables ``alchemy_env`` set for the app in this run (names, values, what they
    held before), or None. Their :meth:`~pytest_alchemy.appenv.AppEnvironment.hint` is the
    sentence to add to an error about a schema that did not land on the test database."""
    prepared = config.stash.get(APP_ENV, None)
    return prepared.environment if prepared is not None else None
