"""The Alembic checks as test items: the downgrade check and the migration checks.

With the Alembic schema, ``alchemy_downgrade_check = true`` adds one item, run last,
that downgrades the test database to the base; ``alchemy_migration_checks`` adds
one item per check (``single_head``, ``upgrade``, ``roundtrip``, ``drift``). Each
is named after the Alembic configuration (``alembic.ini::alembic_roundtrip``), so
``-k`` and ``--deselect`` select them like any test, and each fails with one
paragraph naming the revision (or the differences), without a traceback from
inside the plugin.

The migration checks run on a database of their own, derived from the test
database's name with ``_migrations`` and created and dropped through the
provisioner (so the guard holds); the shared test database is left alone. The
init SQL's ``CREATE EXTENSION`` and ``CREATE SCHEMA`` statements run there first.

An ``env.py`` that ignores the connection and URL it is given and connects through
the app's own settings (which ``alchemy_env`` points at the test database) cannot
reach that database: when it is found to connect to the test database instead, the
checks run on the test database itself. It is taken down to the base first and left
at the head afterwards, its init SQL run again and its baseline taken again, so the
tests after the checks find it as it was built.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from . import markers
from .errors import AlchemyError, RunConflictError, message
from .state import STASH

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection

    from .alembic_schema import AlembicLocation, Migrations
    from .runtime import Run
    from .state import PluginState

SUFFIX = "_migrations"
DOWNGRADE = "alembic_downgrade_check"


class AlembicConfigFile(pytest.File):
    """The Alembic configuration, as the parent of the check items (it collects nothing)."""

    def collect(self) -> list[pytest.Item]:
        return []


class MigrationCheck(pytest.Function):
    """A check of the migrations; the plugin gives it no per-test isolation."""


ON_TEST_DATABASE = "alchemy_checked_on_test_database"
"""The user property of a check item that ran on the test database (its name)."""


@dataclass
class Where:
    """Where the migration checks run: their own database, unless ``env.py`` leads to the
    test database (then its name, once the first check found it)."""

    test_database: str | None = None
    init_sql: bool = False

    def note(self, names: list[str]) -> str | None:
        """The summary line for the checks that ran on the test databases ``names``."""
        if not names:
            return None
        again = ", its init SQL run again" if self.init_sql else ""
        shown = ", ".join(names)
        own = ", ".join(name + SUFFIX for name in names)
        return (
            f"alchemy: the migration checks ran on the test database {shown}, not on {own}: "
            "env.py connects through the app's settings, which lead to the test database; "
            f"it was left at the head{again}"
        )


def _failing(fn: Callable[[], None]) -> None:
    try:
        fn()
    except AlchemyError as error:
        raise pytest.fail.Exception(str(error), pytrace=False) from None


@contextlib.contextmanager
def own_database(
    request: pytest.FixtureRequest, url: Any, *, init_sql: bool = False
) -> Iterator[tuple[URL, Any]]:
    """A database of the checks' own (``<test database>_migrations``), dropped afterwards;
    with ``init_sql``, the init SQL's extensions and schemas made there first."""
    from .plan import plan_database
    from .provision import KIND_RUN, STATE_IN_USE, Record
    from .provision.connector import Connector
    from .runs import RunIdentity
    from .runtime import as_url
    from .urls import bounded_name
    from .xdist import worker_id

    state = request.config.stash[STASH]
    plan = plan_database(
        state.settings, as_url(url, "alchemy_url"), worker=worker_id(request.config)
    )
    provisioner = plan.provisioner
    name = bounded_name(plan.name + SUFFIX, provisioner.name_limit)
    try:
        if provisioner.exists(name):
            existing = provisioner.read_record(name)
            if existing is not None and existing.held_by_live_run():
                assert existing.owner is not None
                raise RunConflictError(
                    message(
                        f"the migration checks' database {provisioner.describe(name)} is in use "
                        f"by another pytest run that is still alive: {existing.owner.describe()}."
                    )
                )
            provisioner.drop(name)
        record = Record(kind=KIND_RUN, state=STATE_IN_USE, owner=RunIdentity.current())
        provisioner.create(name, record)
        target = provisioner.test_url(name)
        connector = Connector(
            target,
            connect_args=lambda url: dict(
                provisioner.engine_options(url, {}).get("connect_args") or {}
            ),
        )
        try:
            if init_sql:
                from .schema import run_init_sql

                # As on the test database: the init SQL before the schema.
                connector.run(lambda connection: run_init_sql(connection, state.settings.init_sql))
            yield target, connector
        finally:
            connector.close()
            provisioner.drop(name)
    finally:
        provisioner.close()


def _migrations(location: AlembicLocation) -> Migrations:
    from .alembic_schema import load

    return load(location)


def held_message(what: str, run: Run) -> str:
    """Why ``what`` cannot run on the test database while a layer holds it."""
    held = ", ".join(layer.name for layer in run.cycle.state.layers)
    return message(
        f"{what} must run on the test database (env.py connects through the app's "
        f"settings, which lead there), but the layer {held} still holds it, so it cannot be "
        "downgraded under the layer. Give that layer a narrower scope (package or module), "
        'or let env.py use the connection the plugin passes (config.attributes["connection"]'
        "), so the checks get a database of their own."
    )


def on_test_database(
    request: pytest.FixtureRequest,
    run: Run,
    migrations: Migrations,
    check: Callable[[Migrations, URL, Connection], None],
) -> None:
    """``check`` on the test database itself, taken to the base first; afterwards it is at
    the head again, with the init SQL statements the base dropped run again, the app's
    seeding run again and a new baseline, even when it failed."""
    from . import alembic_schema as schema
    from .schema import run_init_sql, split_init_sql

    if run.cycle.state.layers:
        raise AlchemyError(held_message("the migration checks", run))
    url = run.info.url
    _, after = split_init_sql(run.settings.init_sql)

    def body(connection: Connection) -> None:
        try:
            schema.to_base(migrations, url, connection)
            check(migrations, url, connection)
        except BaseException:
            run.info.fingerprint = None  # never reused in an unknown state
            with contextlib.suppress(Exception):
                schema.upgrade_head(migrations, url, connection)
                run_init_sql(connection, after)
            raise
        run_init_sql(connection, after)

    request.node.user_properties.append((ON_TEST_DATABASE, run.info.name))
    checked = False
    try:
        run.manager.run_on_database(body, transactional=False)
        checked = True
    finally:
        try:
            run.manager.seed_again()  # the base took the app's seed rows with it
        except Exception:
            if checked:
                raise
        finally:
            run.rebaseline()


def make_checks(location: AlembicLocation, where: Where) -> dict[str, Callable[..., None]]:
    """The test functions of the migration checks, by name (their arguments are fixtures)."""
    from . import alembic_schema as schema
    from .state import app_environment

    def on_own_database(
        request: pytest.FixtureRequest,
        url: Any,
        check: Callable[[Migrations, URL, Connection], None],
    ) -> None:
        config = request.config

        def test_run() -> Run | None:
            # With alchemy_env, env.py may connect to the test database: it must exist.
            if app_environment(config) is None:
                return None
            found: Run = request.getfixturevalue("_alchemy_run")
            return found

        def body() -> None:
            migrations = _migrations(location)
            run = test_run()
            if run is not None and where.test_database == run.info.name:
                on_test_database(request, run, migrations, check)
                return
            try:
                with own_database(request, url, init_sql=True) as (target, connector):
                    connector.run(lambda connection: check(migrations, target, connection))
            except schema.WrongDatabase as error:
                if run is None or not schema.same_database(error.reached, run.info.url):
                    raise
                where.test_database = run.info.name
                on_test_database(request, run, migrations, check)

        _failing(body)

    def single_head() -> None:
        def body() -> None:
            problem = _migrations(location).single_head_problem()
            if problem is not None:
                raise AlchemyError(message(problem + "."))

        _failing(body)

    def upgrade(request: pytest.FixtureRequest, alchemy_url: Any) -> None:
        on_own_database(request, alchemy_url, schema.check_upgrade)

    def roundtrip(request: pytest.FixtureRequest, alchemy_url: Any) -> None:
        irreversible = request.config.stash[STASH].settings.irreversible

        def check(migrations: Migrations, target: URL, connection: Connection) -> None:
            schema.check_roundtrip(migrations, target, connection, irreversible)

        on_own_database(request, alchemy_url, check)

    def drift(request: pytest.FixtureRequest, alchemy_url: Any, alchemy_metadata: Any) -> None:
        from .schema import as_metadatas

        settings = request.config.stash[STASH].settings
        found = (
            () if alchemy_metadata is None else as_metadatas(alchemy_metadata, "alchemy_metadata")
        )

        def check(migrations: Migrations, target: URL, connection: Connection) -> None:
            schema.check_drift(
                migrations,
                target,
                connection,
                found,
                ignore=settings.drift_ignore,
                extra_tables=settings.drift_extra_tables,
            )

        on_own_database(request, alchemy_url, check)

    return {"single_head": single_head, "upgrade": upgrade, "roundtrip": roundtrip, "drift": drift}


def make_downgrade_check(location: AlembicLocation) -> Callable[..., None]:
    def downgrade_check(
        request: pytest.FixtureRequest, alchemy_url: Any, _alchemy_run: Run
    ) -> None:
        from . import alembic_schema as schema

        run = _alchemy_run
        migrations = _migrations(location)
        url = run.info.url
        if run.cycle.state.layers:
            # A layer of seed data (session or package scope) still holds the test
            # database: the same downgrade runs on a database of its own, from the head.
            def elsewhere() -> None:
                try:
                    with own_database(request, alchemy_url, init_sql=True) as (target, connector):

                        def check(connection: Connection) -> None:
                            schema.upgrade_head(migrations, target, connection)
                            schema.downgrade_base(migrations, target, connection)

                        connector.run(check)
                except schema.WrongDatabase as error:
                    if not schema.same_database(error.reached, url):
                        raise
                    raise AlchemyError(held_message("the downgrade check", run)) from None

            _failing(elsewhere)
            return

        def body(connection: Connection) -> None:
            lifecycle = run.manager.lifecycle
            kept = not lifecycle.drop and (lifecycle.keep or lifecycle.reuse)
            try:
                schema.downgrade_base(migrations, url, connection)
            except BaseException:
                if kept and run.info is not None:
                    run.info.fingerprint = None  # never reused in this state
                raise
            if kept:
                # What is kept (for reuse) is at the head again.
                schema.upgrade_head(migrations, url, connection)

        _failing(lambda: run.manager.run_on_database(body, transactional=False))

    return downgrade_check


class MigrationItems:
    """Adds the check items at collection (registered only with the Alembic schema)."""

    def __init__(
        self,
        location: AlembicLocation,
        checks: tuple[str, ...],
        downgrade: bool,
        init_sql: tuple[str, ...] = (),
    ):
        self.location = location
        self.checks = checks
        self.downgrade = downgrade
        from .schema import split_init_sql

        # The seed rows of the init SQL are what is run again after the checks.
        self.where = Where(init_sql=bool(split_init_sql(init_sql)[1]))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        # From the reports, so that under pytest-xdist the controller says it too.
        names: list[str] = []
        for reports in terminalreporter.stats.values():
            for report in reports:
                if getattr(report, "when", None) != "call":
                    continue
                for key, value in getattr(report, "user_properties", ()):
                    if key == ON_TEST_DATABASE and value not in names:
                        names.append(str(value))
        note = self.where.note(sorted(names))
        if note is not None:
            terminalreporter.write_line(note)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> Iterator[None]:
        # Added before the other plugins see the items: -k, -m and --deselect apply.
        parent = AlembicConfigFile.from_parent(session, path=self.location.path)
        functions = make_checks(self.location, self.where)
        for name in self.checks:
            items.append(self._item(parent, f"alembic_{name}", functions[name]))
        if self.downgrade:
            items.append(self._item(parent, DOWNGRADE, make_downgrade_check(self.location)))
        result = yield
        # The downgrade check runs last, whatever reordered the items.
        last = [
            item for item in items if isinstance(item, MigrationCheck) and item.name == DOWNGRADE
        ]
        if last:
            items.remove(last[0])
            items.append(last[0])
        return result

    @staticmethod
    def _item(parent: pytest.File, name: str, fn: Callable[..., None]) -> MigrationCheck:
        item = MigrationCheck.from_parent(parent, name=name, callobj=fn)
        item.add_marker(getattr(pytest.mark, markers.NAME))
        return item


def chosen_schema(config: pytest.Config, state: PluginState) -> str:
    """The schema source of the run (``alchemy_schema``, else what the project has)."""
    from .runtime import default_schema

    hooked = bool(config.hook.pytest_alchemy_create_schema.get_hookimpls())
    return default_schema(state.settings, hooked=hooked, alembic=state.alembic_config)


def register(config: pytest.Config, state: PluginState) -> None:
    """With the Alembic schema: the downgrade check and the migration checks as test items."""
    from .settings import migration_checks

    settings, location = state.settings, state.alembic_config
    checks = migration_checks(settings.migration_checks)
    if not (checks or settings.downgrade_check):
        return
    schema = chosen_schema(config, state)
    if location is None or schema != "alembic":
        asked = "alchemy_migration_checks" if checks else "alchemy_downgrade_check"
        config.issue_config_time_warning(
            pytest.PytestConfigWarning(
                f"pytest-alchemy: {asked} is set, but the schema is built with {schema}, not "
                "Alembic, so there is nothing to check: no test item is added. Add an "
                "alembic.ini (or alchemy_alembic_config), or remove the setting."
            ),
            stacklevel=2,
        )
        return
    items = MigrationItems(location, checks, settings.downgrade_check, settings.init_sql)
    config.pluginmanager.register(items, "alchemy-migration-checks")


def check_early(config: pytest.Config, state: PluginState) -> None:
    """With the Alembic schema, before any test: Alembic installed, its configuration
    and script location there (a :class:`ConfigurationError` otherwise)."""
    if chosen_schema(config, state) == "alembic":
        from .alembic_schema import preflight

        preflight(state.alembic_config)
