"""The sync fixtures: thin layers over ``runtime``, ``isolation`` and ``binding``.

Session fixtures mirror the settings and can each be overridden in a
``conftest.py``: ``alchemy_url`` (for example from a container),
``alchemy_metadata``, ``alchemy_engine_options``, ``alchemy_session_options``.
They chain into ``alchemy_database``, which provisions the test database at the
first test that needs one: a run whose tests use none of these fixtures (and
no ``alchemy_db`` marker) imports no app code and opens no connection.

Errors in the set-up are shown as one paragraph on each test that needed the
database, without a traceback from inside the plugin.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

from . import markers
from .errors import AlchemyError
from .state import STASH, PluginState

if TYPE_CHECKING:
    # SQLAlchemy and the database modules are imported when a test first needs
    # the database, not when pytest starts.
    from sqlalchemy.engine import URL, Connection, Engine
    from sqlalchemy.orm import Session, sessionmaker

    from .aio import AsyncTest
    from .database import DatabaseInfo
    from .isolation import Strategy
    from .isolation.base import TestTransaction
    from .isolation.cycle import Outcome
    from .runtime import Run
    from .settings import Settings


class AlchemyLeakWarning(UserWarning):
    """A test left changes in the database (with ``alchemy_leak_check = warn``)."""


@contextmanager
def reported() -> Iterator[None]:
    """Turn the plugin's own errors into a test error without a plugin traceback."""
    try:
        yield
    except AlchemyError as error:
        raise pytest.fail.Exception(str(error), pytrace=False) from None


def plugin_state(config: pytest.Config) -> PluginState:
    return config.stash[STASH]


def settings_of(request: pytest.FixtureRequest) -> Settings:
    return plugin_state(request.config).settings


# -- session fixtures, each overridable ---------------------------------------


@pytest.fixture(scope="session")
def _alchemy_enabled(request: pytest.FixtureRequest) -> None:
    """First link of the chain: with ``alchemy_no_db``, database tests skip right here."""
    settings = settings_of(request)
    if settings.no_db:
        pytest.skip(
            f"no database: alchemy_no_db is set (from {settings.source('no_db')}), and this "
            "test needs one"
        )


@pytest.fixture(scope="session")
def _alchemy_server(request: pytest.FixtureRequest, _alchemy_enabled: None) -> Iterator[Any]:
    """The throwaway server of ``alchemy_server``, started on first use, stopped at exit."""
    settings = settings_of(request)
    if settings.server is None:
        yield None
        return
    from .servers import reap_orphans, start_server

    state = plugin_state(request.config)
    with reported():
        state.reaped_servers = [str(path) for path in reap_orphans()]
        server = start_server(settings.server, port=settings.server_port)
    state.server = server
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def alchemy_url(request: pytest.FixtureRequest, _alchemy_server: Any) -> URL:
    """The configured database URL: the server and app database the test database derives from.

    From ``--alchemy-url`` / ``ALCHEMY_URL`` / ``alchemy_url``; with
    ``alchemy_server`` the throwaway server's; else the embedded SQLite default.
    Override it to compute the URL, for example from a container fixture.
    """
    from .runtime import embedded_url
    from .urls import DEFAULT_DATABASE

    settings = settings_of(request)
    if _alchemy_server is not None:
        server_url: URL = _alchemy_server.url
        configured = settings.url
        return server_url.set(
            drivername=configured.drivername if configured else server_url.drivername,
            database=(configured.database if configured else None) or DEFAULT_DATABASE,
        )
    if settings.url is not None:
        return settings.url
    return embedded_url(embedded_folder(request.config))


def embedded_folder(config: pytest.Config) -> Path:
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("alchemy"))
    return Path(config.rootpath, ".pytest_cache", "d", "alchemy")


@pytest.fixture(scope="session")
def alchemy_metadata(request: pytest.FixtureRequest, _alchemy_enabled: None) -> Any:
    """The MetaData the schema is built from (a MetaData, a Base, or a list of them).

    From ``alchemy_metadata = pkg.module:attr``; else SQLModel's metadata or the
    declarative Base classes already imported; else None (an error at the first
    database test, saying how to configure it). Override it to return your own.
    """
    from .schema import discover_metadata, import_object

    settings = settings_of(request)
    if settings.metadata is not None:
        with reported():
            return import_object(settings.metadata, "alchemy_metadata")
    found = discover_metadata()
    if not found:
        return None
    return found[0] if len(found) == 1 else list(found)


@pytest.fixture(scope="session")
def alchemy_engine_options() -> dict[str, Any]:
    """Extra keyword arguments for the engines pytest-alchemy creates. Default ``{}``.

    Refused: AUTOCOMMIT in any spelling, driver autocommit connect args and
    READ UNCOMMITTED, which would make isolation impossible.
    """
    return {}


@pytest.fixture(scope="session")
def alchemy_session_options() -> dict[str, Any]:
    """Extra keyword arguments for the test sessionmakers. Default ``{}``.

    For example ``expire_on_commit=False`` or ``class_=sqlmodel.Session``.
    ``bind``, ``binds`` and ``join_transaction_mode`` are refused: the plugin owns them.
    """
    return {}


@pytest.fixture(scope="session")
def _alchemy_run(
    request: pytest.FixtureRequest, _alchemy_enabled: None, alchemy_url: Any, alchemy_metadata: Any
) -> Iterator[Run]:
    """Provision the test database (once per run) and drop or keep it at the end."""
    from .runtime import as_url, prepare, schema_source

    config = request.config
    settings = settings_of(request)
    hook = config.hook

    def hook_build(connection: Connection, database: DatabaseInfo) -> Any:
        return hook.pytest_alchemy_create_schema(connection=connection, database=database)

    def hook_fingerprint() -> str | None:
        value = hook.pytest_alchemy_schema_fingerprint(config=config)
        return None if value is None else str(value)

    implemented = bool(hook.pytest_alchemy_create_schema.get_hookimpls())
    with reported():
        url = as_url(alchemy_url, "the alchemy_url fixture")
        run = prepare(
            settings,
            url,
            lambda database: schema_source(
                settings,
                alchemy_metadata,
                database,
                hook_build=hook_build if implemented else None,
                hook_fingerprint=hook_fingerprint if implemented else None,
            ),
            app_sessions=settings.app_sessions,
        )
    state = plugin_state(config)
    state.run = run
    try:
        yield run
    finally:
        state.outcome = run.close()


@pytest.fixture(scope="session")
def alchemy_database(_alchemy_run: Run) -> DatabaseInfo:
    """The test database: ``url``, ``name``, ``backend``, ``created``/``reused`` and why,
    ``fingerprint``, ``server_version``."""
    return _alchemy_run.info


@pytest.fixture(scope="session")
def alchemy_engine(_alchemy_run: Run, alchemy_engine_options: dict[str, Any]) -> Iterator[Engine]:
    """A pooled sync engine on the test database (disposed at the end of the run)."""
    from .engines import build_sync_engine
    from .urls import sync_url

    with reported():
        url = sync_url(_alchemy_run.info.url)
        assert url is not None
        engine = build_sync_engine(
            url, alchemy_engine_options, _alchemy_run.backend, echo=_alchemy_run.settings.echo
        )
    try:
        yield engine
    finally:
        engine.dispose()


# -- per test -------------------------------------------------------------------


def chosen_strategy(item: pytest.Item, settings: Settings) -> tuple[Strategy, str]:
    """The strategy and leak-check mode for ``item``: marker first, then settings."""
    from .isolation import STRATEGIES

    found = [(mark.args, mark.kwargs) for mark in item.iter_markers(markers.NAME)]
    options = markers.merge(found, item.nodeid)
    name = options.isolation or settings.isolation
    return STRATEGIES[name](), options.leak_check or settings.leak_check


class Context:
    """What every test's cycle needs from the session, gathered once.

    The per-test fixtures depend on this one session fixture only, which pulls
    the overridable session fixtures (``alchemy_engine``, ``alchemy_session_options``
    ...) when it is first built: pytest then resolves one fixture per test instead
    of the whole chain behind it.
    """

    def __init__(self, state: PluginState, run: Run, session_options: dict[str, Any]) -> None:
        from .engines import async_session_options, check_session_options, sync_session_options
        from .isolation import STRATEGIES

        check_session_options(session_options, origin="alchemy_session_options")
        self.state = state
        self.run = run
        self.session_options = sync_session_options(session_options)
        self.async_session_options = async_session_options(session_options)
        self.default = STRATEGIES[run.settings.isolation]()
        self.leak_check = run.settings.leak_check
        self.async_test: AsyncTest | None = None
        """The running async test's connection, set by the loop fixture chosen for it."""
        self.async_error: BaseException | None = None
        """Why that loop fixture could not be set up, for the public fixture to raise."""
        self.async_engine_options: dict[str, Any] = {}
        """``alchemy_async_engine_options``, for the async engines of the loops."""

    @property
    def item(self) -> pytest.Item:
        """The test being set up or torn down."""
        item = self.state.item
        assert item is not None, "per-test fixtures run inside a test"
        return item

    def choose(self, item: pytest.Item) -> tuple[Strategy, str]:
        if item.get_closest_marker(markers.NAME) is None:
            return self.default, self.leak_check
        return chosen_strategy(item, self.run.settings)


class SyncContext(Context):
    def __init__(
        self, state: PluginState, run: Run, session_options: dict[str, Any], engine: Engine
    ) -> None:
        super().__init__(state, run, session_options)
        self.engine = engine
        self.tracker = run.tracker(engine)


CONTEXTS = {
    "_alchemy_context": (
        "_alchemy_run",
        "alchemy_session_options",
        "alchemy_async_engine_options",
    ),
    "_alchemy_sync_context": ("_alchemy_run", "alchemy_session_options", "alchemy_engine"),
}
"""The session fixtures every test's cycle starts from, and the fixtures each is made of."""


class SessionContexts:
    """Serves the :data:`CONTEXTS` fixtures of one run.

    The fixtures take no argument, so that no per-test fixture closure names
    ``request`` (pytest builds a new request fixture for every test whose closure
    does, twice). What they are made of, the overridable session fixtures, is
    gathered from the ``pytest_fixture_setup`` hook, which has the request, when
    pytest first sets them up; later tests get the cached value.
    """

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._gathered: dict[str, tuple[Any, ...] | BaseException] = {}

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
            context = Context(plugin_state(self._config), run, session_options)
        context.async_engine_options = engine_options
        return context

    def sync_context(self) -> SyncContext:
        run, session_options, engine = self._parts("_alchemy_sync_context")
        with reported():
            return SyncContext(plugin_state(self._config), run, session_options, engine)

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


class SyncTest:
    """One test's connection and transaction, and the sessions made on it."""

    __test__ = False

    def __init__(
        self, connection: Connection, transaction: TestTransaction, options: dict[str, Any]
    ) -> None:
        self.connection = connection
        self.transaction = transaction
        self.options = options
        self._sessionmaker: sessionmaker[Session] | None = None
        self.sessions: list[Session] = []

    @property
    def sessionmaker(self) -> sessionmaker[Session]:
        if self._sessionmaker is None:
            from sqlalchemy.orm import sessionmaker

            self._sessionmaker = sessionmaker(bind=self.connection, **self.options)
        return self._sessionmaker

    def session(self) -> Session:
        """A session for the test, closed once the test's transaction is over."""
        if "class_" in self.options:
            session = self.sessionmaker()
        else:
            from sqlalchemy.orm import Session

            session = Session(bind=self.connection, **self.options)
        self.sessions.append(session)
        return session


def report_outcome(
    outcome: Outcome, nodeid: str, leak_check: str, engine: str = "alchemy_engine"
) -> None:
    hard = [
        text
        for text in (
            outcome.breach_message(nodeid),
            outcome.blocker_message(nodeid),
            outcome.unreturned_message(nodeid, engine),
        )
        if text is not None
    ]
    leak = outcome.leak_message(nodeid)
    if leak is not None and leak_check == "warn":
        warnings.warn(AlchemyLeakWarning(leak), stacklevel=1)
    elif leak is not None and leak_check == "fail":
        hard.append(leak)
    if hard:
        pytest.fail("\n\n".join(hard), pytrace=False)


@pytest.fixture
def _alchemy_sync_test(_alchemy_sync_context: SyncContext) -> Iterator[SyncTest]:
    from .isolation.cycle import close_test, open_test

    context = _alchemy_sync_context
    item = context.item
    run = context.run
    stats = run.stats
    started = time.perf_counter()
    with reported():
        strategy, leak_check = context.choose(item)
    tracker = context.tracker
    tracker.own = True
    try:
        connection = context.engine.connect()
    finally:
        tracker.own = False
    try:
        transaction = open_test(connection, run.state, strategy)
    except BaseException:
        connection.invalidate()
        connection.close()
        raise
    test = SyncTest(
        connection, transaction, {**strategy.session_options(), **context.session_options}
    )
    stats.tests += 1
    stats.setup_seconds += time.perf_counter() - started
    if run.app_factories:
        from .binding import bound

        with bound(
            run.app_factories, connection, is_async=False, options=strategy.session_options()
        ):
            yield test
    else:
        yield test
    ended = time.perf_counter()
    try:
        outcome = close_test(
            transaction, run.state, strategy, leak_check=leak_check, sessions=test.sessions
        )
    finally:
        connection.close()
        stats.teardown_seconds += time.perf_counter() - ended
    if tracker.open:
        outcome.unreturned = tracker.leaked()
        tracker.forget()
    stats.leaks += bool(outcome.leaks)
    stats.resets += bool(outcome.reset)
    report_outcome(outcome, item.nodeid, leak_check)


@pytest.fixture
def alchemy_connection(_alchemy_sync_test: SyncTest) -> Connection:
    """The test's connection, inside its isolation (an outer transaction under savepoint)."""
    return _alchemy_sync_test.connection


@pytest.fixture
def alchemy_sessionmaker(_alchemy_sync_test: SyncTest) -> sessionmaker[Session]:
    """A sessionmaker bound to the test's connection; its sessions may commit freely."""
    return _alchemy_sync_test.sessionmaker


@pytest.fixture
def alchemy_session(_alchemy_sync_test: SyncTest) -> Session:
    """A session on the test's connection. ``commit()`` and ``rollback()`` are safe."""
    return _alchemy_sync_test.session()


CYCLE_FIXTURES = frozenset(
    {
        "alchemy_connection",
        "alchemy_session",
        "alchemy_sessionmaker",
        "alchemy_async_connection",
        "alchemy_async_session",
        "alchemy_async_sessionmaker",
        "alchemy_async_engine",
    }
)
"""Fixtures that put the test inside its isolation (and its leak check) by themselves."""

DATABASE_FIXTURES = frozenset({"alchemy_database", "alchemy_engine"})
"""Session fixtures that reach the test database: a test using them gets the cycle too."""


IMPLICIT = "_alchemy_implicit"
SYNC_TEST = "_alchemy_sync_test"


def needs_implicit_cycle(item: pytest.Item, names: list[str]) -> bool:
    """Whether a test needs the cycle without having requested a fixture that starts it.

    Tests marked ``alchemy_db`` do, and so do tests that reach the database only
    through ``alchemy_database`` or ``alchemy_engine`` (an app engine made from its
    URL, say): what they commit is then checked and put back like everything else.
    """
    if not CYCLE_FIXTURES.isdisjoint(names):
        return False
    return item.get_closest_marker(markers.NAME) is not None or not DATABASE_FIXTURES.isdisjoint(
        names
    )


@pytest.fixture
def _alchemy_implicit(_alchemy_context: Context) -> None:
    """The async cycle for tests that need it implicitly (added to them at collection).

    Sync tests get ``_alchemy_sync_test`` itself; async ones the loop fixture
    chosen for them, and this fixture to name the reason in errors.
    """
    from .aio import dispatch

    item = _alchemy_context.item
    marked = item.get_closest_marker(markers.NAME) is not None
    dispatch(_alchemy_context, "@pytest.mark.alchemy_db" if marked else "alchemy_database")
