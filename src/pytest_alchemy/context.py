"""What every test's cycle needs from the session, gathered once per run.

The per-test fixtures depend on one session fixture each (``_alchemy_context``
for async tests, ``_alchemy_sync_context`` for sync ones) instead of the whole
chain of overridable session fixtures behind them: pytest then resolves one
fixture per test. Those session fixtures take no argument, so that no per-test
fixture closure names ``request`` (pytest builds a new request fixture, twice,
for every test whose closure does): what they are made of is gathered from the
``pytest_fixture_setup`` hook, which has the request, and the test being run
is recorded by the ``pytest_runtest_setup`` hook. The measured cost behind
this is in ``docs/design-notes.md``.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

from . import markers
from .errors import ConfigurationError, message
from .reporting import reported

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.engine import URL, Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

    from .aio.cycle import AsyncTest
    from .engines import DatabaseSwitch
    from .isolation import Strategies
    from .isolation.base import Strategy
    from .runtime import Run


def chosen_strategy(
    item: pytest.Item, run: Run, strategies: Strategies, override: str | None = None
) -> tuple[Strategy, str]:
    """The strategy and leak-check mode for ``item``: its marker first, then the
    ``alchemy_isolation`` fixture (``override``), then the settings."""
    settings = run.settings
    found = [(mark.args, mark.kwargs) for mark in item.iter_markers(markers.NAME)]
    options = markers.merge(found, item.nodeid, strategies)
    name = options.isolation or override or settings.isolation
    strategy = strategies.usable(name, run.provisioner.name, run.provisioner.capabilities)
    return strategy, options.leak_check or settings.leak_check


def check_override(value: object, where: str, strategies: Strategies) -> str | None:
    """The ``alchemy_isolation`` fixture's value: None or a strategy's name."""
    if value is None or (isinstance(value, str) and value in strategies):
        return value
    raise ConfigurationError(
        message(
            f"{where}: the alchemy_isolation fixture returned {value!r}, which names no "
            f"isolation strategy. Return one of {', '.join(strategies)}, or None for the "
            "alchemy_isolation setting."
        )
    )


class Context:
    """The run, the session options and the default strategy, for the async cycles."""

    def __init__(
        self, contexts: SessionContexts, run: Run, session_options: dict[str, Any]
    ) -> None:
        from .engines import async_session_options, sqlmodel_tables, sync_session_options
        from .refusals import check_session_options

        check_session_options(session_options, origin="alchemy_session_options")
        self._contexts = contexts
        self.run = run
        sqlmodel = sqlmodel_tables()
        self.session_options = sync_session_options(session_options, sqlmodel=sqlmodel)
        self.async_session_options = async_session_options(session_options, sqlmodel=sqlmodel)
        provisioner = run.provisioner
        self.default = contexts.strategies.usable(
            run.settings.isolation, provisioner.name, provisioner.capabilities
        )
        self.leak_check = run.settings.leak_check
        self.async_test: AsyncTest | None = None
        """The running async test's connection, set by the loop fixture chosen for it."""
        self.async_error: BaseException | None = None
        """Why that loop fixture could not be set up, for the public fixture to raise."""
        self.async_engine_options: dict[str, Any] = {}
        """``alchemy_async_engine_options``, for the async engines of the loops."""
        self.async_switch: tuple[AsyncEngine, DatabaseSwitch] | None = None
        """The async engine for databases a strategy acquired for single tests."""

    @property
    def item(self) -> pytest.Item:
        """The test being set up or torn down."""
        item = self._contexts.item
        assert item is not None, "per-test fixtures run inside a test"
        return item

    def choose(self, item: pytest.Item, override: object = None) -> tuple[Strategy, str]:
        """The strategy and leak-check mode for ``item``; ``override``: the value of the
        ``alchemy_isolation`` fixture for it."""
        strategies = self._contexts.strategies
        name = check_override(override, item.nodeid, strategies)
        if item.get_closest_marker(markers.NAME) is None and name is None:
            return self.default, self.leak_check
        return chosen_strategy(item, self.run, strategies, name)


class SyncContext(Context):
    """The same, with the run's sync engine, for the sync cycles."""

    def __init__(
        self, contexts: SessionContexts, run: Run, session_options: dict[str, Any], engine: Engine
    ) -> None:
        super().__init__(contexts, run, session_options)
        self.engine = engine
        self.engine_options: dict[str, Any] = {}
        """``alchemy_engine_options``, for engines on databases a strategy acquired."""
        self._switch: DatabaseSwitch | None = None

    def _database_url(self, database: str) -> URL:
        return self.run.provisioner.test_url(database).set(drivername=self.engine.url.drivername)

    def _switched(self) -> DatabaseSwitch:
        if self._switch is None:
            from sqlalchemy.pool import NullPool

            from .engines import DatabaseSwitch, build_sync_engine

            provisioner = self.run.provisioner
            url = self.engine.url
            options = {**self.engine_options, "poolclass": NullPool}
            engine = build_sync_engine(url, options, provisioner, echo=self.run.settings.echo)
            connect_args = provisioner.engine_options(url, options).get("connect_args") or {}
            self._switch = DatabaseSwitch(engine, connect_args)
        return self._switch

    def engine_for(self, database: str) -> Engine:
        """An engine without pool on the test database ``database`` of the run's server
        (one engine for all of them, pointed at each in turn), whose first connection is
        the one opened ahead there, if any."""
        ready = self.run.cycle.state.opened.pop(database, None)
        return self._switched().point(self._database_url(database), ready)

    def open_database(self, database: str, statements: Sequence[str]) -> Any:
        """A driver connection to ``database`` opened ahead, as :meth:`engine_for`'s
        engine would open it (see :attr:`CycleState.opener`)."""
        return self._switched().open(self._database_url(database), statements)


CONTEXTS = {
    "_alchemy_context": (
        "_alchemy_run",
        "alchemy_session_options",
        "alchemy_async_engine_options",
    ),
    "_alchemy_sync_context": (
        "_alchemy_run",
        "alchemy_session_options",
        "alchemy_engine",
        "alchemy_engine_options",
    ),
}
"""The session fixtures every test's cycle starts from, and the fixtures each is made of."""


class SessionContexts:
    """Serves the :data:`CONTEXTS` fixtures of one run, and knows the running test."""

    def __init__(self, strategies: Strategies) -> None:
        self.strategies = strategies
        self._gathered: dict[str, tuple[Any, ...] | BaseException] = {}
        self.item: pytest.Item | None = None
        """The test being run, set before its fixtures by ``pytest_runtest_setup``."""

    def gather(self, name: str, request: pytest.FixtureRequest) -> None:
        """Get the fixtures ``name`` is made of; an error is raised by the fixture itself,
        so that pytest records it there (a hook that raises leaves that record half made)."""
        try:
            self._gathered[name] = tuple(request.getfixturevalue(part) for part in CONTEXTS[name])
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as error:
            self._gathered[name] = error

    def _parts(self, name: str) -> tuple[Any, ...]:
        found = self._gathered.pop(name)
        if isinstance(found, BaseException):
            raise found
        return found

    def context(self) -> Context:
        run, session_options, engine_options = self._parts("_alchemy_context")
        with reported():
            context = Context(self, run, session_options)
        context.async_engine_options = engine_options
        return context

    def sync_context(self) -> SyncContext:
        run, session_options, engine, engine_options = self._parts("_alchemy_sync_context")
        with reported():
            context = SyncContext(self, run, session_options, engine)
        context.engine_options = engine_options
        run.cycle.state.opener = context.open_database
        return context

    def fixtures(self) -> ModuleType:
        """The fixtures, in a module object for registration as a plugin."""

        def context() -> Context:
            """The run, the session and async engine options, for the async cycles."""
            return self.context()

        def sync_context() -> SyncContext:
            """The run, the sync engine and the session options, for the sync cycles."""
            return self.sync_context()

        module = ModuleType("pytest_alchemy.contexts", "The cycles' session contexts.")
        for name, function in (
            ("_alchemy_context", context),
            ("_alchemy_sync_context", sync_context),
        ):
            setattr(module, name, pytest.fixture(function, scope="session", name=name))
        return module


CONTEXTS_KEY = pytest.StashKey[SessionContexts]()
"""Where the run's :class:`SessionContexts` is kept, in ``config.stash``."""
