"""Alembic as the schema source: ``upgrade head`` once per run on the test database.

The project's own ``env.py`` runs, unmodified. It gets the test database two ways:
the connection the plugin opened, in ``config.attributes["connection"]`` (the way
Alembic's cookbook shares a connection), and ``sqlalchemy.url`` set to the test
database's URL, spelled with an async driver when ``env.py`` builds an async engine
(``alembic init -t async``). The command runs where no event loop is running, so
an async ``env.py``'s ``asyncio.run()`` works even when the schema is built from
inside an async fixture.

Before the first migration runs, the connection ``env.py`` configured Alembic with
is checked: one that leads to another database than the test database stops the
run, before anything is written there. Afterwards the version table of the test
database must be at the head revisions.

The fingerprint is a hash of the head revisions and of every file under the
script location (``env.py`` included, compiled files left out), so an edited
migration or ``env.py`` is never served stale by ``reuse_db``.

Alembic is imported only when it is used: the plugin works without it installed.
This module does not import pytest.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.engine import URL, Connection

from .engines import pools_emptied
from .errors import ConfigurationError, SchemaError, first_line, message
from .schema import FINGERPRINT_VERSION, SchemaSource, _digest
from .urls import async_url, sync_url

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext, RevisionStep
    from alembic.script import Script, ScriptDirectory

T = TypeVar("T")

ALEMBIC_INI = "alembic.ini"
PYPROJECT = "pyproject.toml"
FLASK_MIGRATE_INI = "migrations/alembic.ini"
"""Where Flask-Migrate (``flask db init``) keeps its configuration, beside its env.py."""
INSTALL = "pip install 'pytest-alchemy[alembic]'"
ASYNC_ENV = re.compile(r"async_engine_from_config|create_async_engine|\basyncio\.run\(")
TOOL_ALEMBIC = re.compile(r"^\s*\[tool\.alembic\]", re.MULTILINE)
ASKS_FOR_THE_CONNECTION = (
    "Make env.py use the connection the plugin passes (connectable = "
    'config.attributes.get("connection"), see Alembic\'s cookbook "Sharing a Connection '
    'across one or more programmatic migration commands"), or build its engine from '
    'config.get_main_option("sqlalchemy.url"), which the plugin sets to the test '
    "database; an env.py that reads the app's settings gets the test database through "
    "alchemy_env; an env.py that has to stay as it is can be left out: alchemy_schema = "
    "create_all builds the test schema from the models"
)


# -- where the Alembic configuration is ------------------------------------------------------


@dataclass(frozen=True)
class AlembicLocation:
    """The Alembic configuration of the project: an ini file, a pyproject.toml, or both."""

    ini: Path | None
    toml: Path | None
    origin: str
    """Why this one, in a few words (found in the rootdir, or the setting)."""
    env_hint: str | None = None
    """What ``alchemy_env`` set for the app, said when env.py reached another database."""
    environment: Callable[[URL], AbstractContextManager[Any]] | None = None
    """What env.py runs inside, given the test database's URL: the application context
    of the Flask app (Flask-Migrate's env.py finds its engine through ``current_app``)."""

    @property
    def path(self) -> Path:
        found = self.ini or self.toml
        assert found is not None
        return found


def has_tool_alembic(path: Path) -> bool:
    """Whether the pyproject.toml ``path`` has a ``[tool.alembic]`` section."""
    try:
        return bool(TOOL_ALEMBIC.search(path.read_text(encoding="utf-8")))
    except OSError:
        return False


def find_config(rootdir: Path, configured: str | None, source: str) -> AlembicLocation | None:
    """The project's Alembic configuration: ``configured`` (a path relative to the
    rootdir, from ``source``), else ``alembic.ini`` or a pyproject.toml with
    ``[tool.alembic]`` in the rootdir; None when there is none."""
    if configured is not None:
        path = Path(configured)
        if not path.is_absolute():
            path = rootdir / path
        if not path.is_file():
            raise ConfigurationError(
                message(
                    f"alembic_config = {configured!r} (from {source}): there is no file "
                    f"{path}. Point it at your alembic.ini (or the pyproject.toml with "
                    "[tool.alembic]), relative to the rootdir."
                )
            )
        origin = f"alembic_config from {source}"
        if path.suffix == ".toml":
            return AlembicLocation(None, path, origin)
        sibling = path.parent / PYPROJECT
        return AlembicLocation(path, sibling if has_tool_alembic(sibling) else None, origin)
    ini = rootdir / ALEMBIC_INI
    toml = rootdir / PYPROJECT
    with_toml = toml if has_tool_alembic(toml) else None
    if ini.is_file():
        return AlembicLocation(ini, with_toml, f"{ALEMBIC_INI} found in the rootdir")
    if with_toml is not None:
        return AlembicLocation(None, with_toml, f"[tool.alembic] found in {PYPROJECT}")
    flask_migrate = rootdir / FLASK_MIGRATE_INI
    if flask_migrate.is_file() and (flask_migrate.parent / "env.py").is_file():
        return AlembicLocation(flask_migrate, None, f"Flask-Migrate's {FLASK_MIGRATE_INI} found")
    return None


def require_alembic() -> None:
    """A clear error when Alembic is not installed."""
    try:
        import alembic  # noqa: F401
    except ModuleNotFoundError:
        raise ConfigurationError(
            message(
                "the schema is built with Alembic (alchemy_schema = alembic, or an Alembic "
                "configuration was found), but alembic is not installed. Install the "
                f"alembic extra ({INSTALL}), or set alchemy_schema = create_all."
            )
        ) from None


def preflight(location: AlembicLocation | None) -> None:
    """What can be checked before any test runs: a configuration, Alembic, the script location."""
    if location is None:
        from .runtime import NO_ALEMBIC_CONFIG

        raise ConfigurationError(message(NO_ALEMBIC_CONFIG))
    load_config(location)


# -- the migrations of the project -----------------------------------------------------------


@dataclass
class Migrations:
    """The project's Alembic environment, loaded: its script directory and revisions."""

    location: AlembicLocation
    config: Config
    script: ScriptDirectory
    directory: Path
    revisions: list[Script]
    """From the base to the head(s)."""
    heads: tuple[str, ...]

    @property
    def env_py(self) -> Path:
        return self.directory / "env.py"

    @property
    def is_async_env(self) -> bool:
        try:
            return bool(ASYNC_ENV.search(self.env_py.read_text(encoding="utf-8")))
        except OSError:
            return False

    def shown(self, path: str | Path) -> str:
        """``path`` relative to the configuration's folder, as messages name files."""
        try:
            return str(Path(path).resolve().relative_to(self.location.path.parent.resolve()))
        except ValueError:
            return str(path)

    def revision_text(self, revision: str) -> str:
        """``abc123 (migrations/versions/abc123_users.py)``."""
        try:
            script = self.script.get_revision(revision)
        except Exception:
            script = None
        path = getattr(script, "path", None)
        return f"{revision} ({self.shown(path)})" if path else revision

    def describe(self) -> str:
        heads = ", ".join(self.heads) or "none"
        label = "head" if len(self.heads) <= 1 else "heads"
        count = len(self.revisions)
        return f"alembic ({label} {heads}, {count} revision{'s' if count != 1 else ''})"

    def file_hashes(self) -> list[str]:
        """``relative/path:sha256`` of every file under the script location, sorted."""
        found = []
        for path in sorted(self.directory.rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
                continue
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found.append(f"{path.relative_to(self.directory).as_posix()}:{digest}")
        return found

    def single_head_problem(self) -> str | None:
        """What is wrong with the heads, or None when there is exactly one."""
        if len(self.heads) == 1:
            return None
        if not self.heads:
            return f"the script location {self.shown(self.directory)} has no revisions"
        listed = ", ".join(self.revision_text(head) for head in self.heads)
        return (
            f"the migrations have {len(self.heads)} heads: {listed}. Merge them into one "
            "(alembic merge heads -m merge), or delete the revision that branched off by mistake"
        )


def load_config(location: AlembicLocation) -> Config:
    """The Alembic ``Config`` of ``location``, its script location made absolute."""
    require_alembic()
    from alembic.config import Config

    config = Config(
        file_=str(location.ini) if location.ini else None,
        toml_file=str(location.toml) if location.toml else None,
    )
    where = location.path.name
    try:
        script_location = config.get_alembic_option("script_location")
    except Exception as error:
        raise ConfigurationError(
            message(f"reading the Alembic configuration {location.path} failed: {error}")
        ) from None
    if (
        not script_location
        and location.ini is not None
        and (location.ini.parent / "env.py").is_file()
    ):
        # Flask-Migrate's migrations/alembic.ini: the folder it is in is the script location.
        script_location = str(location.ini.parent)
    if not script_location:
        raise ConfigurationError(
            message(
                f"the Alembic configuration {location.path} sets no script_location. Add "
                f"script_location = migrations (the folder with env.py and versions/) to its "
                f"{'[tool.alembic]' if location.ini is None else '[alembic]'} section."
            )
        )
    text = str(script_location)
    is_package = ":" in text and not Path(text).is_absolute() and not re.match(r"^\w:\\", text)
    if not is_package:
        directory = Path(text)
        if not directory.is_absolute():
            directory = location.path.parent / directory
        if not (directory / "env.py").is_file():
            missing = "does not exist" if not directory.is_dir() else "has no env.py"
            raise ConfigurationError(
                message(
                    f"the script_location {text!r} of {where} ({directory}) {missing}. Point "
                    "script_location at the folder with env.py and versions/ (relative to "
                    f"{where}), or create it with alembic init."
                )
            )
        config.set_main_option("script_location", str(directory).replace("%", "%%"))
    return config


def load(location: AlembicLocation) -> Migrations:
    """The migrations of ``location``; errors name the configuration, file and revision."""
    config = load_config(location)
    from alembic.script import ScriptDirectory

    try:
        script = ScriptDirectory.from_config(config)
        revisions = list(reversed(list(script.walk_revisions("base", "heads"))))
        heads = tuple(script.get_heads())
    except Exception as error:
        raise SchemaError(
            message(
                f"loading the migrations of {location.path.name} failed: "
                f"{_where(error, Path(config.get_main_option('script_location') or '.'))}"
                f"{type(error).__name__}: {first_line(error)}. Fix that file, then run "
                "alembic heads to check the history loads."
            )
        ) from None
    return Migrations(location, config, script, Path(script.dir), revisions, heads)


def _where(error: BaseException, directory: Path) -> str:
    """``in versions/abc.py, line 12: `` for the innermost frame of ``error`` in a
    file under ``directory`` (or the file of a syntax error)."""
    if isinstance(error, SyntaxError) and error.filename:
        return f"in {error.filename}, line {error.lineno}: "
    found = ""
    for frame in traceback.extract_tb(error.__traceback__):
        if _is_under(Path(frame.filename), directory):
            found = f"in {frame.filename}, line {frame.lineno}: "
    return found


def _is_under(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory.resolve())
    except (ValueError, OSError):
        return False
    return True


# -- running env.py --------------------------------------------------------------------------


@dataclass
class Tracker:
    """What ``env.py`` did: the context it configured, the step running."""

    context: MigrationContext | None = None
    step: RevisionStep | None = None
    called: bool = False


class WrongDatabase(SchemaError):
    """``env.py`` connected to another database than the one it was given: nothing ran."""

    def __init__(self, text: str, reached: URL) -> None:
        super().__init__(text)
        self.reached = reached


class StepFailure(SchemaError):
    """A migration step raised; the message names the revision and its file."""


Plan = Callable[["Migrations", tuple[str, ...], "MigrationContext"], Iterable["RevisionStep"]]


def env_url(migrations: Migrations, url: URL) -> URL:
    """The test URL as ``env.py`` needs it: an async driver for an async ``env.py``."""
    if migrations.is_async_env:
        return async_url(url, purpose="an async env.py")
    return sync_url(url, required=False) or url


def run_env(
    migrations: Migrations,
    url: URL,
    connection: Connection | None,
    plan: Plan,
    *,
    what: str,
    destination: str | None = None,
) -> Tracker:
    """Run ``env.py`` once with the steps ``plan`` returns, on the test database ``url``.

    ``connection`` (on ``url``) is handed to ``env.py`` through
    ``config.attributes["connection"]``. Raises :class:`SchemaError` with the revision
    and file of a failing step.
    """
    from alembic.runtime.environment import EnvironmentContext

    config = migrations.config
    test_url = env_url(migrations, url)
    # The connection is handed over only where env.py can use it: not across threads when
    # it is an async driver's (it works only on its own event loop).
    loop_running = _loop_running()
    shared = connection
    if connection is not None and loop_running and connection.dialect.is_async:
        shared = None
    tracker = Tracker()

    def fn(heads: Any, context: MigrationContext) -> Iterable[RevisionStep]:
        tracker.called = True
        tracker.context = context
        _check_target(migrations, context, test_url, shared)
        current = tuple(heads) if isinstance(heads, (tuple, list)) else ((heads,) if heads else ())
        return _tracked(plan(migrations, current, context), tracker)

    def invoke() -> None:
        config.set_main_option(
            "sqlalchemy.url", test_url.render_as_string(hide_password=False).replace("%", "%%")
        )
        config.attributes["connection"] = shared
        environment = EnvironmentContext(
            config,
            migrations.script,
            fn=fn,
            as_sql=False,
            starting_rev=None,
            destination_rev=destination,
            tag=None,
        )
        configure = environment.configure

        def checked_configure(*args: Any, **kwargs: Any) -> None:
            # The database env.py chose is checked before anything is written to it.
            configure(*args, **kwargs)
            if not environment.is_offline_mode():
                _check_target(migrations, environment.get_context(), test_url, shared)

        environment.configure = checked_configure  # type: ignore[method-assign]
        try:
            around = migrations.location.environment
            with (
                _preserved_logging(),
                pools_emptied(),
                around(test_url) if around is not None else nullcontext(),
                environment,
            ):
                migrations.script.run_env()
        finally:
            config.attributes.pop("connection", None)

    try:
        if loop_running:
            _in_thread(invoke)
        else:
            invoke()
    except (SchemaError, ConfigurationError):
        raise  # the plugin's own (the app factory env.py runs inside failed): said already
    except Exception as error:
        raise _failure(migrations, tracker, error, what, test_url) from None
    if not tracker.called:
        raise SchemaError(
            message(
                f"{what}: {migrations.shown(migrations.env_py)} ran but never called "
                "context.run_migrations() in online mode, so no migration ran on the test "
                f"database. {ASKS_FOR_THE_CONNECTION}."
            )
        )
    return tracker


def _tracked(steps: Iterable[RevisionStep], tracker: Tracker) -> Iterator[RevisionStep]:
    for step in steps:
        tracker.step = step
        yield step
    tracker.step = None


def _failure(
    migrations: Migrations, tracker: Tracker, error: Exception, what: str, url: URL
) -> SchemaError:
    step = tracker.step
    reason = f"{type(error).__name__}: {first_line(error)}"
    env_py, line = _place_in(migrations, error, migrations.env_py)
    elsewhere = _url_replaced(migrations, url) if tracker.context is None else None
    if elsewhere is not None:
        return WrongDatabase(
            message(
                f"{what}: {env_py} failed with {reason}. It had set sqlalchemy.url to "
                f"{elsewhere.render_as_string()} in place of the test database "
                f"{url.render_as_string()} the plugin set, so it connected there; nothing "
                f"was written to the test database. {ASKS_FOR_THE_CONNECTION}."
                + _env_hint(migrations)
            ),
            elsewhere,
        )
    if step is not None:
        revision = step.revision
        direction = "upgrade" if step.is_upgrade else "downgrade"
        where, _ = _place_in(migrations, error, Path(revision.path))
        return StepFailure(
            message(
                f"{what}: the {direction}() of revision {revision.revision} ({where}) failed "
                f"with {reason}. Fix that migration."
            )
        )
    if line is not None or not tracker.called:
        return SchemaError(message(f"{what}: {env_py} failed with {reason}."))
    return SchemaError(message(f"{what} failed with {reason}."))


def _place_in(migrations: Migrations, error: BaseException, path: Path) -> tuple[str, int | None]:
    """How messages name ``path`` (with the line of it ``error`` was raised from), and
    that line."""
    line = _line_in(error, path)
    return migrations.shown(path) + (f", line {line}" if line else ""), line


def _env_hint(migrations: Migrations) -> str:
    """What ``alchemy_env`` set for the app, to end a wrong-database message with."""
    hint = migrations.location.env_hint
    return f" {hint}" if hint else ""


def _line_in(error: BaseException, path: Path) -> int | None:
    line = None
    for frame in traceback.extract_tb(error.__traceback__):
        with contextlib.suppress(OSError):
            if Path(frame.filename).resolve() == path.resolve():
                line = frame.lineno
    return line


def _check_target(
    migrations: Migrations, context: MigrationContext, url: URL, shared: Connection | None
) -> None:
    """Stop before the first migration when ``env.py`` connected to another database."""
    connection = context.connection
    if connection is None:
        raise SchemaError(
            message(
                f"{migrations.shown(migrations.env_py)} configured Alembic without a "
                "connection (offline mode, or context.configure(url=...)), so no migration "
                f"would run on the test database. {ASKS_FOR_THE_CONNECTION}."
            )
        )
    if shared is not None and connection is shared:
        return
    reached = connection.engine.url
    if same_database(reached, url):
        return
    raise WrongDatabase(
        message(
            f"{migrations.shown(migrations.env_py)} connected to {reached.render_as_string()} "
            f"instead of the test database {url.render_as_string()}: it ignored both the "
            'connection in config.attributes["connection"] and the sqlalchemy.url the '
            f"plugin set. No migration was run. {ASKS_FOR_THE_CONNECTION}." + _env_hint(migrations)
        ),
        reached,
    )


def _url_replaced(migrations: Migrations, url: URL) -> URL | None:
    """The URL ``env.py`` put in ``sqlalchemy.url`` in place of the test database's, or
    None when it left it (or put another URL of the test database)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    value = migrations.config.get_main_option("sqlalchemy.url")
    if not value:
        return None
    try:
        found = make_url(value)
    except ArgumentError:
        return None
    return None if same_database(found, url) else found


def same_database(one: URL, other: URL) -> bool:
    if one.get_backend_name() != other.get_backend_name():
        return False
    if one.get_backend_name() == "sqlite":
        first, second = one.database or "", other.database or ""
        if first in ("", ":memory:") or second in ("", ":memory:"):
            return first == second
        return Path(first).resolve() == Path(second).resolve()
    return (one.database or "") == (other.database or "")


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _in_thread(fn: Callable[[], None]) -> None:
    """Run ``fn`` on a thread of its own, where no event loop runs."""
    outcome: dict[str, BaseException] = {}

    def target() -> None:
        try:
            fn()
        except BaseException as error:  # re-raised in the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=target, name="pytest-alchemy-alembic", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]


@contextlib.contextmanager
def _preserved_logging() -> Iterator[None]:
    """``env.py``'s ``fileConfig()`` does not outlive the migrations: it would disable
    the loggers pytest and the application set up."""
    manager = logging.Logger.manager
    root = logging.getLogger()
    saved_root = (root.level, list(root.handlers), root.disabled)
    saved = {
        name: (logger.level, list(logger.handlers), logger.disabled, logger.propagate)
        for name, logger in list(manager.loggerDict.items())
        if isinstance(logger, logging.Logger)
    }
    try:
        yield
    finally:
        root.setLevel(saved_root[0])
        root.handlers[:] = saved_root[1]
        root.disabled = saved_root[2]
        for name, logger in list(manager.loggerDict.items()):
            if not isinstance(logger, logging.Logger):
                continue
            if name in saved:
                level, handlers, disabled, propagate = saved[name]
                logger.setLevel(level)
                logger.handlers[:] = handlers
                logger.disabled = disabled
                logger.propagate = propagate
            else:
                logger.disabled = False


# -- plans: what env.py runs -----------------------------------------------------------------


def upgrade_plan(destination: str = "heads") -> Plan:
    def plan(
        migrations: Migrations, heads: tuple[str, ...], _context: MigrationContext
    ) -> list[RevisionStep]:
        return migrations.script._upgrade_revs(destination, heads)  # type: ignore[arg-type]

    return plan


def downgrade_plan(destination: str = "base") -> Plan:
    def plan(
        migrations: Migrations, heads: tuple[str, ...], _context: MigrationContext
    ) -> list[RevisionStep]:
        return migrations.script._downgrade_revs(destination, heads)  # type: ignore[arg-type]

    return plan


def version_heads(connection: Connection, tracker: Tracker) -> tuple[str, ...]:
    """The revisions in the test database's version table (as ``env.py`` named it)."""
    from alembic.runtime.migration import MigrationContext

    opts: dict[str, Any] = {}
    if tracker.context is not None:
        opts["version_table"] = tracker.context.version_table
        opts["version_table_schema"] = tracker.context.version_table_schema
    return tuple(MigrationContext.configure(connection, opts=opts).get_current_heads())


def upgrade_head(migrations: Migrations, url: URL, connection: Connection) -> Tracker:
    """``upgrade head`` on the test database, checked: its version table is at head."""
    problem = migrations.single_head_problem()
    if problem is not None:
        raise SchemaError(message(f"alembic upgrade head cannot run: {problem}."))
    what = "alembic upgrade head on the test database"
    tracker = run_env(migrations, url, connection, upgrade_plan(), what=what, destination="heads")
    found = version_heads(connection, tracker)
    if set(found) != set(migrations.heads):
        table = tracker.context.version_table if tracker.context else "alembic_version"
        shown = ", ".join(found) or "no revision"
        raise SchemaError(
            message(
                f"{what} finished, but the test database's {table} holds {shown} instead of "
                f"the head {', '.join(migrations.heads)}: {migrations.shown(migrations.env_py)} "
                'ignored both the connection in config.attributes["connection"] and the '
                f"sqlalchemy.url the plugin set, and ran the migrations elsewhere. "
                f"{ASKS_FOR_THE_CONNECTION}."
            )
        )
    return tracker


def remaining_tables(connection: Connection, tracker: Tracker) -> list[str]:
    """The tables left in the database besides the version table."""
    from sqlalchemy import inspect

    version = tracker.context.version_table if tracker.context else "alembic_version"
    schema = tracker.context.version_table_schema if tracker.context else None
    inspector = inspect(connection)
    names = set(inspector.get_table_names())
    if schema is not None:
        names |= {f"{schema}.{name}" for name in inspector.get_table_names(schema=schema)}
    return sorted(name for name in names if name not in (version, f"{schema}.{version}"))


def downgrade_base(migrations: Migrations, url: URL, connection: Connection) -> Tracker:
    """``downgrade base`` on the database of ``connection``: it must leave no table but the
    version table."""
    what = "alembic downgrade base"
    tracker = run_env(migrations, url, connection, downgrade_plan(), what=what, destination="base")
    left = remaining_tables(connection, tracker)
    if left:
        raise SchemaError(
            message(
                f"{what} succeeded but left the tables {', '.join(left)} behind: a downgrade() "
                "does not drop what its upgrade() created. Drop them in the downgrade of the "
                "revision that creates them."
            )
        )
    return tracker


def to_base(migrations: Migrations, url: URL, connection: Connection) -> None:
    """``downgrade base`` on the database of ``connection``, then drop the tables no
    migration created (the init SQL's): it is left as the migrations start from."""
    from sqlalchemy import MetaData

    what = "alembic downgrade base (before checking the migrations on the test database)"
    tracker = run_env(migrations, url, connection, downgrade_plan(), what=what, destination="base")
    version = tracker.context.version_table if tracker.context else "alembic_version"
    left = MetaData()
    left.reflect(connection, only=lambda name, _: name != version)
    left.drop_all(connection)


# -- the schema source -----------------------------------------------------------------------


@dataclass
class AlembicSchema(SchemaSource):
    """``upgrade head`` on the test database, once per run."""

    location: AlembicLocation
    url: URL
    """The test database's URL (the connection handed to env.py is on it)."""
    name: str = "alembic"
    transactional: bool = False
    """env.py may open its own connection: what runs before it must be committed."""
    _migrations: Migrations | None = None

    @property
    def migrations(self) -> Migrations:
        if self._migrations is None:
            self._migrations = load(self.location)
        return self._migrations

    def fingerprint(self, url: URL, init_sql: Sequence[str]) -> str | None:
        migrations = self.migrations
        return _digest(
            [
                FINGERPRINT_VERSION,
                self.name,
                url.get_backend_name(),
                *migrations.heads,
                *migrations.file_hashes(),
                *init_sql,
            ]
        )

    def build(self, connection: Connection) -> None:
        upgrade_head(self.migrations, self.url, connection)

    def describe(self) -> str:
        return self.migrations.describe()


def header_note(location: AlembicLocation) -> str:
    """``alembic (head abc123, 12 revisions)`` for the report header, or, when the
    migrations do not load (the run says why once it needs them), where they are."""
    try:
        return load(location).describe()
    except Exception:
        return f"alembic ({location.path.name})"


# -- the migration checks --------------------------------------------------------------------


def _snapshot(connection: Connection, version_table: str) -> dict[str, tuple[str, ...]]:
    """The tables of the database and their columns, without the version table."""
    from sqlalchemy import inspect

    inspector = inspect(connection)
    return {
        table: tuple(sorted(column["name"] for column in inspector.get_columns(table)))
        for table in inspector.get_table_names()
        if table != version_table
    }


def _snapshot_difference(
    before: dict[str, tuple[str, ...]], after: dict[str, tuple[str, ...]]
) -> list[str]:
    found = [f"table {name} is left behind" for name in sorted(set(after) - set(before))]
    found += [f"table {name} is gone" for name in sorted(set(before) - set(after))]
    for name in sorted(set(before) & set(after)):
        extra = sorted(set(after[name]) - set(before[name]))
        missing = sorted(set(before[name]) - set(after[name]))
        found += [f"column {name}.{column} is left behind" for column in extra]
        found += [f"column {name}.{column} is gone" for column in missing]
    return found


def check_upgrade(migrations: Migrations, url: URL, connection: Connection) -> None:
    """Every revision from the base to the head, one step at a time; the version table
    at the head afterwards."""
    problem = migrations.single_head_problem()
    if problem is not None:
        raise SchemaError(message(f"the upgrade check cannot run: {problem}."))
    tracker = run_env(
        migrations,
        url,
        connection,
        upgrade_plan(),
        what="upgrade from the base to the head, step by step",
        destination="heads",
    )
    found = version_heads(connection, tracker)
    if set(found) != set(migrations.heads):
        raise SchemaError(
            message(
                f"after upgrading to the head, the version table holds {', '.join(found) or 'no'}"
                f" revision instead of {', '.join(migrations.heads)}."
            )
        )


def check_roundtrip(
    migrations: Migrations, url: URL, connection: Connection, irreversible: Sequence[str] = ()
) -> None:
    """For each revision: upgrade, downgrade, upgrade again; the downgrade must put the
    tables and columns back as they were before the upgrade. The revisions ``irreversible``
    names (ids or their first characters) are only upgraded."""
    from alembic.runtime.migration import MigrationStep

    problem = migrations.single_head_problem()
    if problem is not None:
        raise SchemaError(message(f"the roundtrip check cannot run: {problem}."))
    ids = [script.revision for script in migrations.revisions]
    unknown = [given for given in irreversible if not any(each.startswith(given) for each in ids)]
    if unknown:
        raise SchemaError(
            message(
                f"alchemy_irreversible names {', '.join(unknown)}, which is no revision of "
                f"{migrations.shown(migrations.directory)}. Give revision ids (or their first "
                "characters), as alembic history shows them."
            )
        )
    skipped = {each for each in ids if any(each.startswith(given) for given in irreversible)}

    def plan(
        migrations: Migrations, _heads: tuple[str, ...], context: MigrationContext
    ) -> Iterator[RevisionStep]:
        assert context.connection is not None
        table = context.version_table
        revision_map = migrations.script.revision_map
        for script in migrations.revisions:
            if script.revision in skipped:
                yield MigrationStep.upgrade_from_script(revision_map, script)
                continue
            before = _snapshot(context.connection, table)
            yield MigrationStep.upgrade_from_script(revision_map, script)
            yield MigrationStep.downgrade_from_script(revision_map, script)
            difference = _snapshot_difference(before, _snapshot(context.connection, table))
            if difference:
                raise SchemaError(
                    message(
                        f"the downgrade() of revision {migrations.revision_text(script.revision)} "
                        "does not undo its upgrade(): after upgrading and downgrading again, "
                        + "; ".join(difference)
                        + ". Make its downgrade() reverse every change of its upgrade()."
                    )
                )
            yield MigrationStep.upgrade_from_script(revision_map, script)

    run_env(
        migrations,
        url,
        connection,
        plan,
        what="roundtrip (upgrade, downgrade, upgrade again) of each revision",
        destination="heads",
    )


def _drift_line(diff: Any) -> str:
    """One autogenerate difference, in words."""
    if isinstance(diff, list):
        return "; ".join(_drift_line(each) for each in diff)
    kind = diff[0]
    if kind == "add_table":
        return f"table {diff[1].name} is in the models, but no migration creates it"
    if kind == "remove_table":
        return f"table {diff[1].name} is in the migrated database, but not in the models"
    if kind == "add_column":
        return f"column {diff[2]}.{diff[3].name} is in the models, but no migration adds it"
    if kind == "remove_column":
        return f"column {diff[2]}.{diff[3].name} is in the migrated database, not in the models"
    if kind in ("modify_type", "modify_nullable", "modify_default", "modify_comment"):
        what = kind.removeprefix("modify_")
        return (
            f"column {diff[2]}.{diff[3]}: {what} is {diff[5]!s} in the migrated database, "
            f"{diff[6]!s} in the models"
        )
    if kind in ("add_index", "remove_index", "add_constraint", "remove_constraint"):
        element = diff[1]
        where = "models" if kind.startswith("add") else "migrated database"
        table = getattr(getattr(element, "table", None), "name", "?")
        return f"{kind.split('_', 1)[1]} {element.name} on {table} is only in the {where}"
    if kind in ("add_fk", "remove_fk"):
        element = diff[1]
        where = "models" if kind.startswith("add") else "migrated database"
        table = getattr(getattr(element, "parent", None), "name", "?")
        columns = ", ".join(column.name for column in element.columns)
        return f"foreign key on {table} ({columns}) is only in the {where}"
    return repr(diff)


def _object_names(obj: Any, name: str | None, type_: str) -> list[str]:
    """The names the drift ignore list matches ``obj`` by: its table, table.name."""
    if type_ == "table":
        return [str(name)]
    table = getattr(obj, "table", None)
    if table is None:
        table = getattr(obj, "parent", None)
    table_name = getattr(table, "name", None)
    if table_name is None:
        return [str(name)]
    return [str(table_name), f"{table_name}.{name}"]


def check_drift(
    migrations: Migrations,
    url: URL,
    connection: Connection,
    metadata: Sequence[Any],
    *,
    ignore: Sequence[str] = (),
    extra_tables: bool = False,
) -> None:
    """After ``upgrade head``, autogenerate finds no difference with the models.

    Server defaults are not compared (their spelling differs from one server to the
    next); tables the models do not have are left alone unless ``extra_tables``;
    ``ignore`` holds shell-style patterns of table, table.column or table.index names.
    """
    import fnmatch

    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    check_upgrade(migrations, url, connection)
    found: list[Any] = []

    def plan(
        migrations: Migrations, _heads: tuple[str, ...], context: MigrationContext
    ) -> list[RevisionStep]:
        opts = dict(context.opts)
        targets = list(metadata) or _as_list(opts.get("target_metadata"))
        if not targets:
            raise SchemaError(
                message(
                    "the drift check has no models to compare with: set alchemy_metadata "
                    "(myapp.models:Base), or target_metadata in env.py."
                )
            )
        user_include = opts.get("include_object")

        def include(obj: Any, name: str | None, type_: str, reflected: bool, other: Any) -> bool:
            if user_include is not None and not user_include(obj, name, type_, reflected, other):
                return False
            if type_ == "table" and reflected and other is None and not extra_tables:
                return False
            names = _object_names(obj, name, type_)
            return not any(
                fnmatch.fnmatchcase(each, pattern) for each in names for pattern in ignore
            )

        opts["include_object"] = include
        opts["compare_server_default"] = False
        opts.pop("fn", None)
        assert context.connection is not None
        compared = MigrationContext.configure(connection=context.connection, opts=opts)
        found.extend(compare_metadata(compared, targets[0] if len(targets) == 1 else targets))  # type: ignore[arg-type]
        return []

    run_env(migrations, url, connection, plan, what="the drift check", destination="heads")
    if found:
        lines = "\n".join(f"  - {_drift_line(diff)}" for diff in found)
        raise SchemaError(
            message(
                f"the models and the migrations disagree: after upgrade head, autogenerate "
                f"finds {len(found)} difference{'s' if len(found) != 1 else ''}:\n{lines}\n"
                "Write a migration for them (alembic revision --autogenerate), or list what "
                "to leave alone in alchemy_drift_ignore."
            )
        )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
