"""The sync fixtures: thin layers over ``runtime``, ``isolation`` and ``binding``.

Session fixtures mirror the settings and can each be overridden in a
``conftest.py``: ``alchemy_url`` (for example from a container),
``alchemy_metadata``, ``alchemy_engine_options``, ``alchemy_session_options``.
They chain into ``_alchemy_run`` (behind ``alchemy_database`` and
``alchemy_engine``), which provisions the test database at the first test that
needs one: a run whose tests use none of these fixtures (and no ``alchemy_db``
marker) imports no app code and opens no connection.

What can be checked without a connection was checked once after collection
(``preflight``); the errors left (an unreachable server, what an overriding
fixture returned) are shown as one paragraph on each test that needed the
database, without a traceback from inside the plugin.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .context import SyncContext
from .errors import AlchemyError
from .reporting import report_outcome, reported
from .state import APP_ENV, STASH, PluginState

if TYPE_CHECKING:
    # SQLAlchemy and the database modules are imported when a test first needs
    # the database, not when pytest starts.
    from sqlalchemy.engine import URL, Connection, Engine
    from sqlalchemy.orm import Session, sessionmaker

    from .binding import Bindings
    from .blocker import Blocker
    from .database import DatabaseInfo
    from .isolation.cycle import Hold
    from .runtime import Run
    from .seeding import Seeder
    from .settings import Settings


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
    """The throwaway server of ``alchemy_server``, started on first use, stopped at exit.

    With ``reuse_db`` its data is kept in pytest's cache for the next run.
    """
    settings = settings_of(request)
    if settings.server is None:
        yield None
        return
    from .servers import reap_orphans, start_server

    state = plugin_state(request.config)
    server = state.server  # started before the conftests were loaded, for alchemy_env
    if server is None:
        with reported():
            state.reaped_servers = [str(path) for path in reap_orphans()]
            server = start_server(
                settings.server,
                port=settings.server_port,
                keep=state.server_cache,
                recreate=settings.create_db,
            )
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
    from .plan import source_url

    server = _alchemy_server.url if _alchemy_server is not None else None
    return source_url(settings_of(request), server=server, embedded=embedded_folder(request.config))


def embedded_folder(config: pytest.Config) -> Path:
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("alchemy"))
    found = cache_folder(config, "alchemy")  # while pytest starts, for alchemy_env
    return found or Path(config.rootpath, ".pytest_cache", "d", "alchemy")


def cache_folder(config: pytest.Config, name: str) -> Path | None:
    """The folder ``name`` of pytest's cache before the cache is set up (None when it is
    disabled): the folder ``config.cache.mkdir(name)`` gives later."""
    if config.pluginmanager.is_blocked("cacheprovider"):
        return None
    given = os.path.expanduser(os.path.expandvars(str(config.getini("cache_dir"))))
    folder = Path(config.rootpath, given, "d", name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


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


def _no_template(state: PluginState) -> str | None:
    """Why no template would outlive this run: a throwaway server deletes its data."""
    server = state.server
    if server is not None and server.kept is None:
        return "the throwaway server's data is deleted at exit (reuse_db keeps it)"
    return None


def seeders_of(config: pytest.Config, settings: Settings) -> list[Seeder]:
    """The app's seeding: ``alchemy_seed``, then the ``pytest_alchemy_seed`` hooks."""
    from .seeding import CONNECTION, Seeder, load_seeder, source_hash

    found = [load_seeder(settings.seed)] if settings.seed else []
    impls = config.hook.pytest_alchemy_seed.get_hookimpls()
    if impls:
        hook = config.hook

        def seed(connection: Connection) -> None:
            hook.pytest_alchemy_seed(connection=connection)

        found.append(
            Seeder(
                name="the pytest_alchemy_seed hook",
                fn=seed,
                kind=CONNECTION,
                source=source_hash(*(impl.function for impl in impls)),
            )
        )
    return found


@pytest.fixture(scope="session")
def _alchemy_run(
    request: pytest.FixtureRequest, _alchemy_enabled: None, alchemy_url: Any, alchemy_metadata: Any
) -> Iterator[Run]:
    """Provision the test database (once per run) and drop or keep it at the end."""
    from .engines import echo_to_logging
    from .runtime import as_url, prepare, schema_source
    from .xdist import worker_id

    config = request.config
    settings = settings_of(request)
    hook = config.hook

    def hook_build(connection: Connection, database: DatabaseInfo) -> Any:
        return hook.pytest_alchemy_create_schema(connection=connection, database=database)

    def hook_fingerprint() -> str | None:
        value = hook.pytest_alchemy_schema_fingerprint(config=config)
        return None if value is None else str(value)

    implemented = bool(hook.pytest_alchemy_create_schema.get_hookimpls())
    # The logging plugin's capture shows echoed SQL; without it, SQLAlchemy's stdout does.
    logged = settings.echo and config.pluginmanager.hasplugin("logging-plugin")
    # Building the schema may go through the app's own engine (an Alembic env.py that
    # imports it, a schema hook): the plugin's own work, which the blocker lets through.
    with reported(), plugin_state(config).blocker.unblock():
        url = as_url(alchemy_url, "the alchemy_url fixture")
        _check_app_environment(config, settings, url, worker_id(config))
        run = prepare(
            settings,
            url,
            lambda database: schema_source(
                settings,
                alchemy_metadata,
                database,
                hook_build=hook_build if implemented else None,
                hook_fingerprint=hook_fingerprint if implemented else None,
                alembic=plugin_state(config).alembic_config,
            ),
            worker=worker_id(config),
            seeders=seeders_of(config, settings),
            no_template=_no_template(plugin_state(config)),
        )
    state = plugin_state(config)
    state.run = run
    prepared = config.stash.get(APP_ENV, None)
    run.environment = prepared.environment if prepared is not None else None
    state.blocker.watch_test_database(run.info.url, run.info.name, run.rebaseline)
    try:
        provisioner = run.provisioner
        with reported(), state.blocker.unblock():
            run.warm(
                state.strategies.ahead(
                    state.used_isolation, provisioner.name, provisioner.capabilities
                )
            )
        with echo_to_logging(logged):
            yield run
    finally:
        try:
            state.strategies.close()
        finally:
            outcome = run.close()
        server = state.server
        if server is not None and server.kept is None and outcome.startswith("kept"):
            # keep_db or reuse_db kept it, but on a server whose data is deleted at exit.
            outcome = "deleted with the throwaway server"
        state.outcome = outcome


def _check_app_environment(
    config: pytest.Config, settings: Settings, url: URL, worker: str | None
) -> None:
    """With ``alchemy_env``: the run's test database is the one the app's variables name."""
    from .appenv import check_run_database
    from .plan import plan_database
    from .state import APP_ENV

    prepared = config.stash.get(APP_ENV, None)
    if prepared is None:
        return
    planned = plan_database(settings, url, worker=worker)
    try:
        check_run_database(prepared, planned.url, "the alchemy_url fixture")
    finally:
        planned.provisioner.close()


@pytest.fixture(scope="session")
def alchemy_blocker(request: pytest.FixtureRequest) -> Blocker:
    """The database blocker: ``with alchemy_blocker.unblock():`` lets the code in the block
    reach databases where ``alchemy_block_unmarked`` refuses them (in fixtures wider than a
    test, in tests without the database). What the block commits to the test database
    outside a test becomes the baseline every test starts from."""
    return plugin_state(request.config).blocker


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
            url, alchemy_engine_options, _alchemy_run.provisioner, echo=_alchemy_run.settings.echo
        )
    try:
        yield engine
    finally:
        engine.dispose()


# -- per test -------------------------------------------------------------------


class SyncTest:
    """One test's connection and transaction, and the sessions made on it."""

    __test__ = False

    def __init__(self, hold: Hold, options: dict[str, Any]) -> None:
        self.hold = hold
        self.connection = hold.connection
        self.options = options
        self._sessionmaker: sessionmaker[Session] | None = None
        self.sessions: list[Session] = []
        self._shared: Session | None = None
        self.bindings: Bindings | None = None
        """What the test bound while it ran (``alchemy_bind``, ``alchemy_override``)."""

    @property
    def sessionmaker(self) -> sessionmaker[Session]:
        if self._sessionmaker is None:
            from sqlalchemy.orm import sessionmaker

            self._sessionmaker = sessionmaker(bind=self.connection, **self.options)
        return self._sessionmaker

    def shared(self) -> Session:
        """The test's session: ``alchemy_session``, and what factories bound to the test
        write through (one identity map for both)."""
        if self._shared is None:
            self._shared = self.session()
        return self._shared

    def session(self) -> Session:
        """A session for the test, closed once the test's transaction is over."""
        if "class_" in self.options:
            session = self.sessionmaker()
        else:
            from sqlalchemy.orm import Session

            session = Session(bind=self.connection, **self.options)
        self.sessions.append(session)
        return session


@pytest.fixture(scope="session")
def alchemy_isolation() -> str | None:
    """The isolation strategy of the tests that see this fixture; None (the default): the
    ``alchemy_isolation`` setting. Override it in a conftest (any scope) to give the tests
    under it another strategy; a test's ``alchemy_db(isolation=...)`` marker still wins."""
    return None


@pytest.fixture
def _alchemy_sync_test(
    _alchemy_sync_context: SyncContext, alchemy_isolation: str | None
) -> Iterator[SyncTest]:
    context = _alchemy_sync_context
    item = context.item
    run = context.run
    started = time.perf_counter()
    with reported():
        strategy, leak_check = context.choose(item, alchemy_isolation)
    try:
        hold = run.cycle.open(
            context.engine,
            strategy,
            leak_check,
            started=started,
            engine_for=context.engine_for,
            where=item.nodeid,
        )
    except AlchemyError as error:
        raise pytest.fail.Exception(str(error), pytrace=False) from None
    # From here on the test is ended exactly once, whatever fails before it runs.
    test: SyncTest | None = None
    try:
        test = SyncTest(hold, {**strategy.session_options(), **context.session_options})
        from .binding import BINDERS, Bindings, Handle, bound

        handle = Handle(
            hold.connection,
            False,
            strategy.session_options(),
            context.session_options,
            shared_session=test.shared,
        )
        with (
            run.on_database(hold.database),
            bound(run.app_objects, handle),
            Bindings(handle, BINDERS, run.requirements_met) as test.bindings,
        ):
            yield test
    finally:
        hold.ended = time.perf_counter()
        outcome = run.cycle.finish(hold, test.sessions if test is not None else ())
    report_outcome(outcome, item.nodeid, leak_check, "alchemy_engine")


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
    return _alchemy_sync_test.shared()
