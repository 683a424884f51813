"""The pytest plugin: options, configuration, the report header and summary.

Loaded through the ``pytest11`` entry point ``alchemy``; ``-p no:alchemy``
turns it off. Only hooks live here: the option table is in ``settings``, the
fixtures in ``fixtures`` (those binding the app in ``app_fixtures``), database
work in modules that do not import pytest.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

import pytest

from . import aio, app_fixtures, fixtures, hooks, markers, migration_items, selection, xdist
from .blocker import Blocked, Blocker
from .context import CONTEXTS, CONTEXTS_KEY, SessionContexts
from .errors import AlchemyError, ConfigurationError, DatabaseBlockedError, drop_explained_causes
from .isolation import Strategies
from .reporting import overhead
from .settings import OPTIONS, Option, Settings, read
from .state import APP_ENV, STASH, PluginState, app_environment
from .urls import render_url

if TYPE_CHECKING:
    from .alembic_schema import AlembicLocation

GROUP = "alchemy"
CONTROLLER_KEY = pytest.StashKey[xdist.ControllerHooks]()
TAKEN_ALIASES = pytest.StashKey[list[tuple[str, str]]]()
"""Seed flags another plugin owns in this run, each with the plugin's own spelling."""


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, "pytest-alchemy: managed test databases")
    for option in OPTIONS:
        ini_type: Literal["linelist", "string"] = "linelist" if option.kind == "list" else "string"
        parser.addini(option.ini, option.help, type=ini_type, default=None)
        if option.cli:
            _add_flag(group, option.flag, option, option.dest, option.help)


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser
) -> Iterator[None]:
    """Add the seed aliases once every plugin and initial conftest has added its options.

    Plugins loaded through entry points add their options in no fixed order,
    so ``pytest_addoption`` is too early to know whether pytest-django (or a
    conftest) owns ``--reuse-db``; by the time the initial conftests are
    loaded, every option that will be parsed is known.

    Before them, with ``alchemy_env``, the app's variables are pointed at the test
    database: the initial conftests (the rootdir's conftest.py) may import the app.
    """
    _point_app_at_test_database(early_config)
    try:
        result = yield
    except BaseException:
        _restore_app_environment(early_config)  # pytest stops without unconfiguring
        raise
    early_config.stash[TAKEN_ALIASES] = add_seed_aliases(parser)
    return result


def _point_app_at_test_database(config: pytest.Config) -> None:
    """With ``alchemy_env``: set the app's variables now (starting the throwaway server,
    whose address they need), before any conftest, test or app module is imported."""
    namespace = config.known_args_namespace
    if not (config.getini("alchemy_env") or "ALCHEMY_ENV" in os.environ):
        return
    if getattr(namespace, "help", False) or getattr(namespace, "version", False):
        return
    from .appenv import prepare

    try:
        settings = read_config(config, early=True)
    except ConfigurationError as error:
        raise pytest.UsageError(str(error)) from None
    if not settings.env:
        return
    distributed = getattr(namespace, "numprocesses", None) or (
        str(getattr(namespace, "dist", "no")) != "no"
    )
    worker = xdist.worker_id(config)
    try:
        prepared = prepare(
            settings,
            worker=worker,
            controller=settings.no_db
            or (worker is None and bool(distributed) and config.pluginmanager.hasplugin("xdist")),
            embedded=fixtures.embedded_folder(config),
            server_cache=_server_cache(config, settings, early=True),
            environ=os.environ,
        )
    except AlchemyError as error:
        raise pytest.UsageError(str(error)) from None
    prepared.environment.apply(os.environ)
    config.stash[APP_ENV] = prepared


def add_seed_aliases(parser: pytest.Parser) -> list[tuple[str, str]]:
    """Register --reuse-db, --create-db, --database-uri... where no other plugin owns them.

    Each flag is probed by parsing it, so an alias never clashes. Returns the aliases
    another plugin owns, each with the flag that does the same here.
    """
    group = parser.getgroup(GROUP)
    taken = []
    for option in OPTIONS:
        for alias in option.aliases:
            if not _is_free(parser, alias):
                taken.append((alias, option.flag))
                continue
            try:
                _add_flag(group, alias, option, _alias_dest(option), f"Alias of {option.flag}.")
            except Exception:  # registered meanwhile under another spelling
                continue
    return taken


def _add_flag(group: Any, flag: str, option: Option, dest: str, help: str) -> None:
    if option.kind == "bool":
        group.addoption(flag, action="store_true", default=None, dest=dest, help=help)
    else:
        group.addoption(flag, default=None, dest=dest, metavar=option.metavar, help=help)


def _alias_dest(option: Option) -> str:
    return f"alchemy_alias_{option.name}"


def _is_free(parser: pytest.Parser, flag: str) -> bool:
    probe = f"{flag}=1"
    try:
        _, unknown = parser.parse_known_and_unknown_args([probe])
    except (pytest.UsageError, SystemExit, Exception):
        return False
    return probe in unknown


def read_config(
    config: pytest.Config, strategies: Strategies | None = None, *, early: bool = False
) -> Settings:
    """The settings of the run. ``early``: while the initial conftests are being loaded,
    from the flags parsed so far (the seed aliases and conftests' isolation strategies
    are not known yet: :func:`_check_app_environment` compares later)."""
    cli: dict[str, Any] = {}
    used_alias: dict[str, str] = {}
    namespace = config.known_args_namespace if early else config.option
    for option in OPTIONS:
        value = getattr(namespace, option.dest, None) if option.cli else None
        if value is None and not early:
            for alias in option.aliases:
                aliased = config.getoption(_alias_dest(option), None)
                if aliased is not None:
                    value = aliased
                    used_alias[option.name] = alias
        cli[option.name] = value
    ini = {option.name: config.getini(option.ini) for option in OPTIONS}
    ini_file = config.inipath.name if config.inipath else None
    return read(
        cli,
        os.environ,
        ini,
        ini_file=ini_file,
        alias_used=lambda option: used_alias.get(option.name),
        choices={"isolation": tuple(strategies)} if strategies is not None else None,
        unchecked=("isolation",) if early else (),
    )


def pytest_configure(config: pytest.Config) -> None:
    try:
        added = config.hook.pytest_alchemy_isolation_strategies()
        strategies = Strategies(strategy for found in added for strategy in found)
        settings = read_config(config, strategies)
    except ConfigurationError as error:
        raise pytest.UsageError(str(error)) from None
    config.addinivalue_line("markers", markers.description(strategies))
    blocker = Blocker(settings.app_sessions)
    state = PluginState(settings=settings, strategies=strategies, blocker=blocker)
    try:
        state.alembic_config = _alembic_config(config, settings)
    except ConfigurationError as error:
        raise pytest.UsageError(str(error)) from None
    state.server_cache = _server_cache(config, settings)
    config.stash[STASH] = state
    _check_app_environment(config, state)
    _watch_app_environment(config, state)
    _warn_about_loop_scopes(config)
    config.pluginmanager.register(fixtures, "alchemy-fixtures")
    config.pluginmanager.register(app_fixtures, "alchemy-app-fixtures")
    contexts = config.stash[CONTEXTS_KEY] = SessionContexts(strategies)
    config.pluginmanager.register(contexts.fixtures(), "alchemy-contexts")
    config.pluginmanager.register(aio.fixtures, "alchemy-aio")
    config.pluginmanager.register(aio.internal_fixtures(config), "alchemy-aio-loops")
    if settings.block_unmarked:
        config.pluginmanager.register(BlockerHooks(blocker), "alchemy-blocker")
    migration_items.register(config, state)
    if xdist.is_controller(config):
        controller = config.stash[CONTROLLER_KEY] = xdist.ControllerHooks()
        config.pluginmanager.register(controller, "alchemy-xdist")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Close the blocker; with ``alchemy_env``, stop the server started for it (when no
    test stopped it) and give the app's variables back what they held before."""
    state = config.stash.get(STASH, None)
    if state is not None:
        state.blocker.close()
    _restore_app_environment(config)


def _restore_app_environment(config: pytest.Config) -> None:
    prepared = config.stash.get(APP_ENV, None)
    if prepared is None:
        return
    prepared.environment.restore(os.environ)
    if prepared.server is not None:
        try:
            prepared.server.stop()
        except AlchemyError as error:
            sys.stderr.write(f"pytest-alchemy: {error}\n")


def _watch_app_environment(config: pytest.Config, state: PluginState) -> None:
    """With ``alchemy_env``, the app reaches the test database from the start: the
    blocker refuses it there before the first database test made it, as after."""
    prepared = config.stash.get(APP_ENV, None)
    if prepared is None or prepared.test_url is None:
        return

    def after_write() -> None:
        if state.run is not None:
            state.run.rebaseline()

    url = prepared.test_url
    state.blocker.watch_test_database(url, url.database or "", after_write)


def _check_app_environment(config: pytest.Config, state: PluginState) -> None:
    """The variables set before the initial conftests must lead to the test database
    the full settings (seed aliases included) lead to."""
    prepared = config.stash.get(APP_ENV, None)
    if prepared is None:
        return
    state.server = prepared.server
    state.reaped_servers = list(prepared.reaped_servers)
    if prepared.test_url is None or (prepared.server is None and state.settings.server):
        return  # a pytest-xdist controller: its workers check their own
    from .fixtures import embedded_folder
    from .plan import plan_database, source_url

    settings = state.settings
    server = prepared.server.url if prepared.server is not None else None
    try:
        url = source_url(settings, server=server, embedded=embedded_folder(config))
        now = plan_database(settings, url, worker=xdist.worker_id(config)).url
    except ConfigurationError:
        return  # reported before any test runs
    if render_url(now) != render_url(prepared.test_url):
        raise pytest.UsageError(
            f"alchemy_env set {', '.join(prepared.environment.names)} to "
            f"{render_url(prepared.test_url)} while the conftest files were loaded, but the "
            f"complete settings lead to {render_url(now)}: a flag that is not known that early "
            "(such as --database-uri, or a flag added by a conftest.py) changed the database. "
            "Use --alchemy-url, ALCHEMY_URL or alchemy_url instead."
        )


PLUGIN_FIXTURES = ("alchemy_", "_alchemy_")
"""Names of the plugin's own fixtures (and of the user's overrides of them)."""


class BlockerHooks:
    """With ``alchemy_block_unmarked``: what runs with or without database access.

    A test runs (set-up, call and teardown) without it unless it is marked or
    requests a database fixture; a fixture wider than a function is set up and
    torn down without it unless it is one of the plugin's own. A refusal fails
    the phase it happened in with the blocker's paragraph, also when the code
    under test caught the error.
    """

    def __init__(self, blocker: Blocker) -> None:
        self.blocker = blocker
        self.nodeid = ""

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Iterator[None]:
        self.nodeid = item.nodeid
        uses_database = selection.uses_database(item)
        self.blocker.database_test = item.nodeid if uses_database else None
        self.blocker.enter(None if uses_database else Blocked(item.nodeid))
        return (yield from self._failing_on_refusal())

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Iterator[None]:
        return (yield from self._failing_on_refusal())

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Iterator[None]:
        try:
            return (yield from self._failing_on_refusal())
        finally:
            self.blocker.enter(None)  # between tests and after the last one: nothing runs
            self.blocker.database_test = None

    def _failing_on_refusal(self) -> Iterator[None]:
        try:
            result = yield
        except (Exception, pytest.fail.Exception, pytest.skip.Exception) as error:
            # Also when the phase failed or skipped on its own (a check item turns the
            # refusal into its failure): the refusal is reported here, once, not again in
            # the next phase.
            self._fail(error)
            raise
        self._fail(None)
        return result

    def _fail(self, error: BaseException | None) -> None:
        found = self.blocker.take_violation()
        if found is None and isinstance(error, DatabaseBlockedError):
            found = str(error)  # a fixture's cached error, raised again for another test
        if found is not None:
            raise pytest.fail.Exception(found, pytrace=False) from None

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Iterator[Any]:
        name = fixturedef.argname
        if fixturedef.scope == "function":
            if name in selection.DATABASE_ACCESS:
                # Asked for while the test runs (request.getfixturevalue): from now on the
                # test has the database.
                self.blocker.database_test = self.nodeid
                self.blocker.enter(None)
            return (yield)
        own = name.startswith(PLUGIN_FIXTURES)
        blocker = self.blocker

        def state(tearing_down: bool) -> Blocked | None:
            if own:
                return None
            return Blocked(self.nodeid, name, fixturedef.scope, tearing_down)

        # Finalizers run last-in first-out: this one after the fixture's own teardown...
        saved: list[Blocked | None] = []
        request.addfinalizer(lambda: blocker.enter(saved.pop()) if saved else None)
        previous = blocker.enter(state(False))
        try:
            result = yield
        finally:
            blocker.enter(previous)
        # ...and this one before it.
        request.addfinalizer(lambda: saved.append(blocker.enter(state(True))))
        return result


def _warn_about_loop_scopes(config: pytest.Config) -> None:
    """Async fixtures and tests on different default loops cannot share a connection."""
    if not config.pluginmanager.hasplugin("asyncio"):
        return
    fixture_scope = config.getini("asyncio_default_fixture_loop_scope")
    test_scope = config.getini("asyncio_default_test_loop_scope") or "function"
    if not fixture_scope or fixture_scope == test_scope:
        return
    config.issue_config_time_warning(
        pytest.PytestConfigWarning(
            "pytest-alchemy: asyncio_default_fixture_loop_scope = "
            f"{fixture_scope} but asyncio_default_test_loop_scope = {test_scope}: your async "
            "fixtures run on another event loop than your tests, so an async fixture that uses "
            "alchemy_async_session (or another alchemy_async_* fixture) would use it from the "
            "wrong loop and fail. Set both to the same scope, or give such fixtures "
            f"loop_scope={test_scope!r}."
        ),
        stacklevel=2,
    )


def _server_cache(config: pytest.Config, settings: Settings, *, early: bool = False) -> Path | None:
    """Where the throwaway server keeps its data for the next run: pytest's cache, with reuse_db.

    ``early``: before pytest's cache is set up (the same folder, found from ``cache_dir``).
    """
    if (not early and _server_reuse_off(config, settings) is not None) or not settings.reuse_db:
        return None
    if early:
        if settings.server is None or settings.drop_db:
            return None
        found = fixtures.cache_folder(config, "alchemy-servers")
        if found is None:
            return None
        folder = found
    else:
        cache = getattr(config, "cache", None)
        if cache is None:
            return None
        folder = Path(cache.mkdir("alchemy-servers"))
    worker = xdist.worker_id(config)
    return folder / worker if worker else folder


def _server_reuse_off(config: pytest.Config, settings: Settings) -> str | None:
    """Why reuse_db cannot keep the throwaway server's data, when that is known from the options."""
    if settings.server is None or not settings.reuse_db:
        return None
    if settings.drop_db:
        return f"alchemy_drop_db is set (from {settings.source('drop_db')})"
    if getattr(config, "cache", None) is None:
        return "pytest's cache, where it would be kept, is disabled (-p no:cacheprovider)"
    return None


def _server_header(config: pytest.Config, state: PluginState) -> str | None:
    """What becomes of the throwaway server's data with reuse_db, before it starts."""
    settings = state.settings
    if settings.server is None or not settings.reuse_db:
        return None
    off = _server_reuse_off(config, settings)
    folder = state.server_cache
    homes = str(folder)
    if off is None and folder is not None:
        from .servers import kept_plan

        folders = [folder]
        if xdist.is_controller(config):
            folders = [folder / f"gw{index}" for index in range(xdist.worker_count(config))]
        plans = [kept_plan(settings.server, each, recreate=settings.create_db) for each in folders]
        off = next((obstacle for _, obstacle in plans if obstacle is not None), None)
        homes = ", ".join(str(home) for home, _ in plans if home is not None) or str(folder)
    if off is not None:
        return (
            f"alchemy: reuse_db cannot keep the throwaway server's data: {off}; this run's "
            "server and its data are deleted at exit"
        )
    anew = " (made anew: alchemy_create_db)" if settings.create_db else ""
    return (
        f"alchemy: the throwaway server's data is kept for reuse in {homes}{anew}; the server "
        "is stopped at exit"
    )


def _server_line(config: pytest.Config, state: PluginState) -> str | None:
    """What became of the throwaway server's data, for the summary (with reuse_db only)."""
    server, settings = state.server, state.settings
    if server is None or not settings.reuse_db:
        return None
    what = f"throwaway {server.kind} {server.version} server"
    if server.kept is not None:
        return f"{what}: {server.keep_note}; kept for the next run, the server stopped"
    off = _server_reuse_off(config, settings)
    note = f"reuse is off: {off}" if off is not None else server.keep_note
    return f"{what}: {note}; its data is deleted with it"


def _alembic_config(config: pytest.Config, settings: Settings) -> AlembicLocation | None:
    from .alembic_schema import find_config

    found = find_config(config.rootpath, settings.alembic_config, settings.source("alembic_config"))
    if found is None:
        return None
    if settings.flask_app is not None:
        from .binding.flask import app_context

        found = dataclasses.replace(
            found, environment=functools.partial(app_context, settings.flask_app)
        )
    environment = app_environment(config)
    if environment is None:
        return found
    return dataclasses.replace(found, env_hint=environment.hint())


def pytest_sessionstart(session: pytest.Session) -> None:
    """With ``alchemy_reap``: reap what dead runs left behind, now, and say what."""
    state = session.config.stash.get(STASH, None)
    if state is None or not state.settings.reap:
        return
    from .errors import AlchemyError
    from .runtime import reap

    try:
        reaped = reap(state.settings, state.settings.url)
    except AlchemyError as error:
        raise pytest.UsageError(str(error)) from None
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            "alchemy: reaped " + (", ".join(reaped) if reaped else "nothing: no dead run left any")
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give the tests that need the database implicitly (marked, or using only
    alchemy_database/alchemy_engine) the fixture that puts them inside their isolation.
    Only those tests pay for it.
    """
    for item in items:
        if isinstance(item, migration_items.MigrationCheck):
            continue  # checks of the migrations, on a database of their own
        names = getattr(item, "fixturenames", None)
        if isinstance(names, list):
            wanted = selection.with_cycle_fixture(item, names)
            if wanted is not None:
                item.fixturenames = wanted  # type: ignore[attr-defined]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Stop the run once, before any test runs or a throwaway server starts, when the
    configuration cannot work: only when a collected test needs the database, so a
    run of tests that need none is never stopped by a setting they do not use."""
    config = session.config
    state = config.stash.get(STASH, None)
    if state is None:
        return
    state.blocker.collected = True
    try:
        marked = _check_markers(session.items, state.strategies)
        state.used_isolation = frozenset({state.settings.isolation, *marked})
        if state.settings.no_db or config.option.collectonly:
            return
        needs = selection.needs_of(session.items)
        if not needs.database:
            return
        from .fixtures import embedded_folder
        from .preflight import Checks, check

        checks = Checks(
            url=not fixture_overrides(config, "alchemy_url"),
            metadata=not fixture_overrides(config, "alchemy_metadata"),
            sync=needs.sync,
            asynchronous=needs.asynchronous,
        )
        check(state.settings, checks, embedded=embedded_folder(config))
        migration_items.check_early(config, state)
    except ConfigurationError as error:
        if xdist.worker_id(config) is None:
            raise pytest.UsageError(str(error)) from None
        # A worker cannot stop the run with a usage error (the controller would only see
        # a crashed worker): it reports a collection error instead, which the controller
        # shows once however many workers send it, and runs nothing.
        report = pytest.CollectReport("", "failed", str(error), [])
        session.ihook.pytest_collectreport(report=report)
        session.items.clear()


def _check_markers(items: list[pytest.Item], strategies: Strategies) -> set[str]:
    """Validate the alchemy_db marker of every selected test; the strategies they name."""
    named = set()
    for item in items:
        found = [(mark.args, mark.kwargs) for mark in item.iter_markers(markers.NAME)]
        if found:
            isolation = markers.merge(found, item.nodeid, strategies).isolation
            if isolation is not None:
                named.add(isolation)
    return named


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = config.stash.get(STASH, None)
    if state is None:
        return []
    settings = state.settings
    if settings.no_db:
        return [f"alchemy: no database (alchemy_no_db from {settings.source('no_db')})"]
    lines = [f"alchemy: {_target(config, settings)}"]
    hooked = bool(config.hook.pytest_alchemy_create_schema.get_hookimpls())
    alembic = state.alembic_config
    schema = migration_items.chosen_schema(config, state)
    why = settings.source("schema")
    if settings.schema is None and hooked:
        why = "a conftest implements pytest_alchemy_create_schema"
    elif settings.schema is None and alembic is not None:
        why = alembic.origin
    schema_note = f"schema={schema} ({why})"
    if schema == "alembic" and alembic is not None:
        from .alembic_schema import header_note

        schema_note = f"schema={header_note(alembic)} ({why})"
    elif alembic is not None and settings.schema is None:
        schema_note += (
            f"; {alembic.path.name} found, but the schema is built with {schema}: "
            "set alchemy_schema to choose explicitly"
        )
    lines.append(
        f"alchemy: isolation={settings.isolation} ({settings.source('isolation')}), {schema_note}"
    )
    if schema == "hook" and settings.template_cache:
        given = config.hook.pytest_alchemy_schema_fingerprint(config=config)
        if given is None:
            lines.append(
                "alchemy: no template cache: pytest_alchemy_schema_fingerprint gives no "
                "fingerprint, so the schema hook builds the schema every run"
            )
    kept = _server_header(config, state)
    if kept is not None:
        lines.append(kept)
    prepared = config.stash.get(APP_ENV, None)
    if prepared is not None:
        environment = prepared.environment
        each = ""
        if xdist.is_controller(config):
            each = " (each pytest-xdist worker sets them to its own test database)"
        lines.append(
            f"alchemy env: {environment.describe()} (from {settings.source('env')}){each}; "
            "restored at exit"
        )
    taken = config.stash.get(TAKEN_ALIASES, [])
    if taken:
        owner = "pytest-django" if config.pluginmanager.hasplugin("django") else "another plugin"
        flags = ", ".join(alias for alias, _ in taken)
        ours = ", ".join(flag for _, flag in taken)
        lines.append(f"alchemy: {owner} owns {flags} in this run: use {ours} for pytest-alchemy")
    verbose = config.get_verbosity() > 0
    shown = [
        f"{name}={value} ({source})"
        for name, value, source in settings.describe()
        if name not in ("url", "isolation", "schema", "env") and (verbose or source != "default")
    ]
    if shown:
        lines.append("alchemy settings: " + ", ".join(shown))
    return lines


def _target(config: pytest.Config, settings: Settings) -> str:
    overrides = fixture_overrides(config, "alchemy_url")
    if overrides:
        return (
            f"database from the URL returned by the alchemy_url fixture in "
            f"{', '.join(overrides)}, which overrides the settings (named in the summary)"
        )
    database = f"database {_test_database(config, settings)}"
    if settings.server is not None:
        where = f"{database} on a throwaway {settings.server} server (from "
        where += f"{settings.source('server')})"
        if settings.url is not None:
            where += f", driver and database from {render_url(settings.url)}"
        return where
    if settings.url is not None:
        return f"{database} from url={render_url(settings.url)} (from {settings.source('url')})"
    return f"{database}, the embedded SQLite default (no alchemy_url set)"


def fixture_overrides(config: pytest.Config, name: str) -> list[str]:
    """The loaded conftest files and plugins that define their own fixture ``name``
    (one of the plugin's, such as ``alchemy_url``), relative to the rootdir.

    The header is written and the settings are checked before any fixture runs, so
    what such a fixture returns is not known yet: neither may rely on the settings'
    value. A conftest in a subdirectory is loaded only later, while tests are collected.
    """
    own = getattr(fixtures, name, None) or getattr(app_fixtures, name, None)
    found = []
    for plugin in config.pluginmanager.get_plugins():
        if not isinstance(plugin, ModuleType) or plugin.__name__.startswith("pytest_alchemy"):
            continue
        defined = vars(plugin).get(name)
        if defined is None or defined is own or not callable(defined):
            continue
        path = Path(getattr(plugin, "__file__", None) or plugin.__name__)
        try:
            found.append(str(path.relative_to(config.rootpath)))
        except ValueError:
            found.append(str(path))
    return sorted(found)


def _test_database(config: pytest.Config, settings: Settings) -> str:
    """The test database the configured URL leads to (without connecting)."""
    from .fixtures import embedded_folder
    from .plan import plan_database, source_url

    url = source_url(settings, server=None, embedded=embedded_folder(config))
    workers = [xdist.worker_id(config)]
    if xdist.is_controller(config):
        workers = [f"gw{index}" for index in range(xdist.worker_count(config))] or [None]
    try:
        plans = [plan_database(settings, url, worker=worker) for worker in workers]
    except ConfigurationError:
        return "(unsupported backend)"
    if len(plans) == 1:
        return plans[0].describe()
    names = ", ".join(plan.provisioner.describe(plan.name) for plan in plans)
    return f"{plans[0].provisioner.name} {names} (one per pytest-xdist worker)"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    contexts = item.config.stash.get(CONTEXTS_KEY, None)
    if contexts is not None:
        contexts.item = item


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    """Report a driver error the plugin explained once: its paragraph, not also the raw
    error with the driver's traceback."""
    if call.excinfo is not None:
        drop_explained_causes(call.excinfo.value)


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> None:
    """Before an async fixture of the plugin, the loop fixture that opens the connection;
    before a cycle's session context, the fixtures it is made of."""
    name = fixturedef.argname
    if name in aio.ROUTED:
        aio.open_on_loop(request)
    elif name in CONTEXTS:
        request.config.stash[CONTEXTS_KEY].gather(name, request)


def _figures(config: pytest.Config, state: PluginState) -> dict[str, Any] | None:
    """What the summary reports about this process's test database, as plain values
    (a pytest-xdist worker sends them to the controller)."""
    run = state.run
    if run is None:
        return None
    info, stats = run.info, run.stats
    return {
        "line": (
            f"database {info.name} on {info.backend} {info.server_version} through "
            f"{info.url.get_driver_name()}: {info.status} "
            f"({info.reason}) in {info.build_seconds:.2f} s, schema {info.schema}, "
            + (f"{info.template_note}, " if info.template_note else "")
            + f"fingerprint {info.fingerprint or '-'}; at the end: {state.outcome or 'pending'}"
        ),
        "server": _server_line(config, state),
        "strategies": state.strategies.summaries(),
        "reaped": list(info.reaped),
        "reaped_servers": list(state.reaped_servers),
        "tests": stats.tests,
        "samples": list(stats.samples),
        "build_seconds": info.build_seconds,
        "leaks": stats.leaks,
        "resets": stats.resets,
    }


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On a pytest-xdist worker: send the summary's figures to the controller."""
    state = session.config.stash.get(STASH, None)
    figures = _figures(session.config, state) if state is not None else None
    if figures is not None:
        xdist.send(session.config, figures)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    state = config.stash.get(STASH, None)
    if state is None:
        return
    controller = config.stash.get(CONTROLLER_KEY, None)
    own = _figures(config, state)
    found = [own] if own is not None else []
    if controller is not None:
        found += [controller.workers[worker] for worker in sorted(controller.workers)]
    if not found:
        return
    write = terminalreporter.write_line
    terminalreporter.section("alchemy", sep="-")
    for figures in found:
        write(figures["line"])
        if figures.get("server"):
            write(figures["server"])
        for line in figures.get("strategies", ()):
            write(line)
    reaped = sorted({name for figures in found for name in figures["reaped"]})
    if reaped:
        write(f"reaped databases left by dead runs: {', '.join(reaped)}")
    servers = sorted({name for figures in found for name in figures["reaped_servers"]})
    if servers:
        write(f"stopped throwaway servers left by dead runs: {', '.join(servers)}")
    tests = sum(figures["tests"] for figures in found)
    leaks = sum(figures["leaks"] for figures in found)
    resets = sum(figures["resets"] for figures in found)
    workers = f" on {len(found)} workers" if controller is not None else ""
    write(
        f"{tests} database tests{workers}, {_overhead_text(found, controller is not None)}, "
        f"{leaks} leaks, {resets} connection resets"
    )


def _overhead_text(found: list[dict[str, Any]], distributed: bool) -> str:
    """The steady tests' median isolation overhead, with what the first test of a process
    and preparing its database cost apart, so neither inflates the figure."""
    measured = overhead(figures["samples"] for figures in found)
    if measured is None:
        return "isolation overhead not measured (no test reached its isolation)"
    build = max(figures["build_seconds"] for figures in found)
    slowest = ", slowest worker" if distributed else ""
    if measured.steady:
        tests = "test" if measured.steady == 1 else "tests"
        text = f"median of {measured.steady} steady {tests}; apart{slowest}: first test "
        text += f"{measured.first_ms:.2f} ms, "
    else:
        text = f"first tests only; apart{slowest}: "
    return (
        f"isolation overhead {measured.median_ms:.2f} ms/test (set-up + teardown, {text}"
        f"preparing the database {build:.2f} s)"
    )
