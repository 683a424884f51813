"""The database side of one pytest run, assembled from the settings.

Data flows one way: settings -> URL -> plan (backend, test database name) ->
test database (provisioned, schema built) -> baseline and per-test checks.
:func:`prepare` does all of it, without pytest; the fixtures call it once, at
the first test that needs a database, and build the engines from its result.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine

from .binding import AppObject, resolve
from .database import DatabaseInfo, DatabaseManager, Lifecycle
from .errors import ConfigurationError, message
from .isolation.cycle import Cycle, CycleState, Stats
from .plan import plan_database
from .provision import Provisioner, provisioner_for
from .refusals import check_url_query
from .schema import NO_METADATA, CreateAll, HookSchema, NoSchema, SchemaSource, as_metadatas
from .seeding import Seeder
from .settings import Settings
from .urls import as_url as parse_any_url
from .urls import require_driver

if TYPE_CHECKING:
    from .alembic_schema import AlembicLocation
    from .appenv import AppEnvironment
    from .binding.base import Requirement
    from .isolation.base import Strategy


def as_url(value: Any, origin: str) -> URL:
    """``value`` (a URL or string) as a URL that keeps tests isolated, or a clear error."""
    url = parse_any_url(value)
    if url is None:
        raise _not_a_url(value, origin)
    check_url_query(url, origin)
    return url


def _not_a_url(value: Any, origin: str) -> ConfigurationError:
    return ConfigurationError(
        message(
            f"{origin} returned {value!r}, which is not a database URL. Return a SQLAlchemy URL "
            "or a string such as postgresql+psycopg://user@host/app."
        )
    )


@dataclass
class Run:
    settings: Settings
    provisioner: Provisioner
    manager: DatabaseManager
    info: DatabaseInfo
    cycle: Cycle
    app_objects: list[AppObject]
    environment: AppEnvironment | None = None
    """The app's variables set by ``alchemy_env`` (None: none)."""
    requirements_met: set[Requirement] = field(default_factory=set)
    """The framework releases found recent enough so far (each is looked up once)."""

    @contextmanager
    def on_database(self, database: str | None) -> Iterator[None]:
        """While the block runs, the app's variables lead to ``database`` (a copy a strategy
        acquired for a test) instead of the run's test database; None: they stay."""
        if database is None or self.environment is None:
            yield
            return
        with self.environment.pointed_at(self.info.name, database, os.environ):
            yield

    @property
    def stats(self) -> Stats:
        return self.cycle.stats

    def watch_errors(self) -> None:
        """Explain driver errors of every engine in the process while the run lasts."""
        event.listen(Engine, "handle_error", self.cycle.state.explain)

    def rebaseline(self) -> None:
        """Take the baseline again, outside any test: what a fixture wider than a test
        committed (unblocked) is then what every later test must find."""
        state = self.cycle.state
        if state.open_tests == 0:
            self.manager.run_on_database(state.take_baseline, transactional=False)

    def warm(self, strategies: Sequence[Strategy]) -> None:
        """Let ``strategies`` prepare ahead of the first test (:meth:`Strategy.warm`),
        through an engine of their own on the test database."""
        if not strategies:
            return
        from sqlalchemy.pool import NullPool

        from .engines import build_sync_engine
        from .isolation.base import StrategyContext
        from .urls import sync_url

        url = sync_url(self.info.url, purpose="preparing the isolation strategies")
        assert url is not None
        engine = build_sync_engine(url, {"poolclass": NullPool}, self.provisioner)
        try:
            context = StrategyContext(self.cycle.state, engine)
            for strategy in strategies:
                strategy.warm(context)
        finally:
            engine.dispose()

    def close(self) -> str:
        explain = self.cycle.state.explain
        if event.contains(Engine, "handle_error", explain):
            event.remove(Engine, "handle_error", explain)
        try:
            return self.manager.teardown()
        finally:
            self.provisioner.close()


def schema_source(
    settings: Settings,
    metadata: Any,
    database: DatabaseInfo,
    *,
    hook_build: Callable[[Connection, DatabaseInfo], Any] | None = None,
    hook_fingerprint: Callable[[], str | None] | None = None,
    alembic: AlembicLocation | None = None,
) -> SchemaSource:
    """The schema source the settings ask for: by default the schema hook when a
    conftest implements it (``hook_build``), else Alembic when its configuration was
    found (``alembic``), else create_all."""
    chosen = default_schema(settings, hooked=hook_build is not None, alembic=alembic)
    if chosen == "none":
        return NoSchema()
    if chosen == "alembic":
        from .alembic_schema import AlembicSchema, require_alembic

        if alembic is None:
            raise ConfigurationError(message(NO_ALEMBIC_CONFIG))
        require_alembic()
        return AlembicSchema(alembic, database.url)
    if chosen == "hook":
        if hook_build is None or hook_fingerprint is None:
            raise ConfigurationError(
                message(
                    "alchemy_schema = hook, but no conftest.py implements "
                    "pytest_alchemy_create_schema(connection, database). Implement it, or set "
                    "alchemy_schema = create_all."
                )
            )
        build = hook_build
        return HookSchema(
            builder=lambda connection: build(connection, database),
            fingerprinter=hook_fingerprint,
        )
    if metadata is None:
        raise ConfigurationError(message(NO_METADATA))
    return CreateAll(as_metadatas(metadata, "alchemy_metadata"))


NO_ALEMBIC_CONFIG = (
    "alchemy_schema = alembic, but no Alembic configuration was found: there is no "
    "alembic.ini, nor a pyproject.toml with [tool.alembic], in the rootdir. Point "
    "alchemy_alembic_config at your alembic.ini (relative to the rootdir), or set "
    "alchemy_schema = create_all."
)


def default_schema(settings: Settings, *, hooked: bool, alembic: AlembicLocation | None) -> str:
    """The schema source of the run: the setting, else the hook when a conftest implements
    it, else Alembic when its configuration is found, else create_all."""
    if settings.schema is not None:
        return settings.schema
    if hooked:
        return "hook"
    return "alembic" if alembic is not None else "create_all"


def reap(settings: Settings, url: URL | None) -> list[str]:
    """Reap what dead runs left: throwaway servers, and test databases on ``url``'s server."""
    from .database import reap_dead
    from .servers import reap_orphans

    reaped = [f"server {path}" for path in reap_orphans()]
    if url is not None and settings.server is None:
        provisioner = provisioner_for(
            url,
            settings.test_prefix,
            lock_timeout=settings.lock_timeout,
            connect_timeout=settings.connect_timeout,
        )
        try:
            reaped += [f"database {name}" for name in reap_dead(provisioner)]
        finally:
            provisioner.close()
    return reaped


def prepare(
    settings: Settings,
    url: URL,
    make_source: Callable[[DatabaseInfo], SchemaSource],
    *,
    worker: str | None = None,
    seeders: Sequence[Seeder] = (),
    no_template: str | None = None,
) -> Run:
    """Provision the test database of ``url`` (schema, then the app's seeding) and take
    its baseline: seed rows are what every test must find."""
    plan = plan_database(settings, url, worker=worker)
    require_driver(url)
    provisioner, name = plan.provisioner, plan.name
    lifecycle = Lifecycle(
        reuse=settings.reuse_db,
        create=settings.create_db,
        keep=settings.keep_db,
        drop=settings.drop_db,
    )
    try:
        factories = resolve(
            settings.app_sessions, settings.overrides, shared=settings.shares_sessions
        )
    except BaseException:
        provisioner.close()
        raise
    planned = DatabaseInfo(url=plan.url, name=name, backend=provisioner.name)
    schema = make_source(planned)
    manager = DatabaseManager(
        provisioner,
        name,
        lifecycle=lifecycle,
        schema=schema,
        init_sql=settings.init_sql,
        seeders=seeders,
        seed_in_template=settings.seed_in_template,
        template_cache=settings.template_cache,
        template_keep=settings.template_keep,
        no_template=no_template,
    )
    started = time.perf_counter()
    try:
        info = manager.setup()
        state = CycleState(
            checks=provisioner.checks(name), schema=schema, keep_tables=settings.keep_tables
        )
        manager.run_on_database(state.take_baseline, transactional=False)
        state.template = info.template
        state.template_holds = None if manager.seeds_each_run else state.baseline
    except BaseException:
        try:
            manager.teardown()
        finally:
            provisioner.close()
        raise
    info.build_seconds = time.perf_counter() - started
    run = Run(settings, provisioner, manager, info, Cycle(state), factories)
    run.watch_errors()
    return run
