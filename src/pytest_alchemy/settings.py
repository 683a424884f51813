"""One table of options, read from the command line, the environment and the ini file.

Every setting of pytest-alchemy is declared once in :data:`OPTIONS`. From that
one declaration come the ``--alchemy-*`` command-line flag, the ``alchemy_*``
ini key and the ``ALCHEMY_*`` environment variable, the help text, the
validation and the place the value came from (shown in the report header).
Precedence is command line, then environment, then ini file, then default.

Promises kept here:

* A value that cannot work stops the run before any database is touched, with
  one paragraph naming the setting, where it came from and the valid choices.
* A setting that is set but empty (``ALCHEMY_URL=``) is an error, never a
  silent fallback to another database.

This module does not import pytest: :func:`read` takes plain mappings, and the
plugin layer adapts ``pytest.Config`` to them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError, message
from .isolation import BUILTIN as BUILTIN_STRATEGIES
from .refusals import check_url_query
from .servers import SERVERS
from .urls import mask_password, parse_url, render_url

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
FALSE = frozenset({"0", "false", "no", "off", "n", "f"})

SCHEMA_SOURCES = ("create_all", "alembic", "hook", "none")
MIGRATION_CHECKS = ("single_head", "upgrade", "roundtrip", "drift")
"""The ready-made migration checks, in the order they run."""
LEAK_CHECK_MODES = ("fail", "warn", "off")
OVERRIDE_SESSIONS = ("per_request", "shared")
"""What an overridden FastAPI dependency hands a request: a session of its own, or the
test's."""
SERVER_KINDS = tuple(SERVERS)
"""Kinds of throwaway server, from their registry in ``servers``."""
ISOLATION_STRATEGIES = tuple(BUILTIN_STRATEGIES)
"""Names of the built-in isolation strategies, from their registry in ``isolation``."""


@dataclass(frozen=True)
class Option:
    """One setting: its name, type, default and help.

    ``kind`` is one of ``str``, ``url``, ``bool``, ``choice``, ``float``,
    ``int``, ``list`` or ``import``. ``aliases`` are the flags users know from
    pytest-django and hand-written conftests; they are registered only when no
    other plugin owns them.
    """

    name: str
    kind: str
    help: str
    default: Any = None
    choices: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    cli: bool = True
    metavar: str | None = None
    separator: str = r"\n"
    """For ``list`` options: how a single string (an environment variable) splits."""
    validate: Callable[[Any], str | None] | None = None
    """Checks the converted value: what is wrong with it, in a few words, or None."""

    @property
    def flag(self) -> str:
        return "--alchemy-" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        return "alchemy_" + self.name

    @property
    def env(self) -> str:
        return "ALCHEMY_" + self.name.upper()

    @property
    def dest(self) -> str:
        return "alchemy_" + self.name


_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _positive(value: float) -> str | None:
    return None if value > 0 else "expected a positive number."


def _at_least_one(value: int) -> str | None:
    return None if value >= 1 else "expected 1 or more."


def _tcp_port(value: int) -> str | None:
    return None if value <= 65535 else "expected a TCP port: 0 (pick a free one) to 65535."


def _identifier_prefix(value: str) -> str | None:
    if _PREFIX.match(value):
        return None
    return (
        "the prefix must start with a letter and contain only letters, digits and "
        "underscores, so that no name it guards needs quoting tricks."
    )


def _env_entries(value: tuple[str, ...]) -> str | None:
    from .appenv import problem_with

    return problem_with(value)


def _migration_checks(value: tuple[str, ...]) -> str | None:
    unknown = [name for name in value if name not in (*MIGRATION_CHECKS, *TRUE, *FALSE, "all")]
    if not unknown:
        return None
    return (
        f"unknown check {unknown[0]!r}. Give true (all of them), or some of: "
        f"{', '.join(MIGRATION_CHECKS)}."
    )


def migration_checks(value: Sequence[str]) -> tuple[str, ...]:
    """The checks ``alchemy_migration_checks`` asks for, in their order."""
    words = {word.lower() for word in value}
    if words & (TRUE | {"all"}):
        return MIGRATION_CHECKS
    return tuple(name for name in MIGRATION_CHECKS if name in words)


OPTIONS: tuple[Option, ...] = (
    Option(
        "url",
        "url",
        "Database to test against. A URL naming an app database (.../app) makes "
        "pytest-alchemy create and use test_app on that server; a SQLite file "
        "data/app.db becomes data/test_app.db. Default: an embedded SQLite file "
        "in pytest's cache directory (.pytest_cache/d/alchemy/).",
        aliases=("--database-uri",),
        metavar="URL",
    ),
    Option(
        "test_prefix",
        "str",
        "Only databases whose name starts with this prefix are ever created, emptied or dropped.",
        default="test_",
        metavar="PREFIX",
        validate=_identifier_prefix,
    ),
    Option(
        "server",
        "choice",
        "Start a throwaway local server from the installed binaries for this run "
        "(stopped and deleted at exit; with reuse_db its data is kept in pytest's cache).",
        choices=SERVER_KINDS,
        metavar="KIND",
    ),
    Option(
        "server_port",
        "int",
        "TCP port of the throwaway server: 0 picks a free one. Default: unix socket only.",
        metavar="PORT",
        validate=_tcp_port,
    ),
    Option(
        "metadata",
        "import",
        "pkg.module:attr of a MetaData or declarative Base (SQLModel's metadata is "
        "found automatically).",
        metavar="PATH",
    ),
    Option(
        "schema",
        "choice",
        "How the schema is built: create_all (metadata.create_all), alembic (alembic "
        "upgrade head, the default when an Alembic configuration is found), hook (the "
        "pytest_alchemy_create_schema hook) or none.",
        choices=SCHEMA_SOURCES,
        metavar="SOURCE",
    ),
    Option(
        "alembic_config",
        "str",
        "Path of the Alembic configuration (an alembic.ini, or a pyproject.toml with "
        "[tool.alembic]), relative to the rootdir. Default: alembic.ini, else pyproject.toml's "
        "[tool.alembic], in the rootdir.",
        metavar="PATH",
    ),
    Option(
        "downgrade_check",
        "bool",
        "With the Alembic schema: at the end of the run, alembic downgrade base on the test "
        "database must succeed and leave no table but alembic_version (a test item of its "
        "own, run last).",
        default=False,
    ),
    Option(
        "migration_checks",
        "list",
        "With the Alembic schema: ready-made test items that check the migrations on a "
        "database of their own: true for all, or some of single_head, upgrade, roundtrip, "
        "drift.",
        default=(),
        cli=False,
        separator=r"[\s,]+",
        validate=_migration_checks,
    ),
    Option(
        "irreversible",
        "list",
        "Revisions (ids, or their first characters) whose downgrade cannot work, such as "
        "data migrations: the roundtrip check upgrades them without downgrading.",
        default=(),
        cli=False,
        separator=r"[\s,]+",
    ),
    Option(
        "drift_ignore",
        "list",
        "What the drift check ignores: table, table.column or table.index_or_constraint "
        "names, shell-style patterns allowed (audit_*, *.updated_at).",
        default=(),
        cli=False,
        separator=r"[\s,]+",
    ),
    Option(
        "drift_extra_tables",
        "bool",
        "The drift check also reports tables in the migrated database that the models do "
        "not have (off: such tables are left alone).",
        default=False,
        cli=False,
    ),
    Option(
        "init_sql",
        "list",
        "Statements run once on the new test database before its schema is built, one per "
        "line (for example CREATE EXTENSION pg_trgm, for tables that use it).",
        default=(),
        cli=False,
    ),
    Option(
        "env",
        "list",
        "Environment variables the app reads its database settings from, set to the test "
        "database before any test module, conftest.py below the rootdir or app module is "
        "imported, and restored at exit: a bare NAME gets the test database URL (in the "
        "driver spelling of its current value), NAME=template gets the template filled in "
        "from {url}, {sync_url}, {async_url}, {host}, {port}, {database}, {username}, "
        "{password} and {driver}. Entries are separated by spaces or lines.",
        default=(),
        cli=False,
        separator=r"\s+",
        validate=_env_entries,
    ),
    Option(
        "seed",
        "import",
        "pkg.module:attr of the app's own seeding function, run once per run after the "
        "schema is built (given a Session, or a Connection when its first parameter says "
        "so; an async def gets an AsyncSession). Its rows are committed and every test "
        "starts from them.",
        cli=False,
        metavar="PATH",
    ),
    Option(
        "seed_in_template",
        "bool",
        "Make the rows of alchemy_seed (and the pytest_alchemy_seed hook) part of the cached "
        "schema: seeded once when the template is built, the seeding code's source joins "
        "the fingerprint. Off: seeding runs every run.",
        default=False,
        cli=False,
    ),
    Option(
        "template_cache",
        "bool",
        "Keep each built schema as a template named by its fingerprint (a database on "
        "PostgreSQL, a file for SQLite) and copy it in later runs instead of building "
        "the schema again.",
        default=True,
        cli=False,
    ),
    Option(
        "template_keep",
        "int",
        "How many templates of a test database to keep on the server (the newest); older "
        "ones are dropped.",
        default=3,
        cli=False,
        metavar="N",
        validate=_at_least_one,
    ),
    Option(
        "isolation",
        "choice",
        "How each test is isolated: savepoint (roll back everything the test did), "
        "truncate (the test commits for real; the tables it wrote are emptied afterwards "
        "and their seed rows put back) or none (nothing undone).",
        default="savepoint",
        choices=ISOLATION_STRATEGIES,
        metavar="STRATEGY",
    ),
    Option(
        "keep_tables",
        "list",
        "Tables the truncate strategy never empties nor refills (names, with or without "
        "schema): what tests write there stays, and becomes what later tests start from.",
        default=("alembic_version",),
        cli=False,
        separator=r"[\s,]+",
    ),
    Option(
        "keep_db",
        "bool",
        "Do not drop the test database at the end (to inspect it); the next run recreates it.",
        default=False,
    ),
    Option(
        "reuse_db",
        "bool",
        "Keep the test database and reuse it next run when its schema fingerprint "
        "still matches; otherwise rebuild it and say why. With a throwaway server, its data "
        "is kept in pytest's cache for this.",
        default=False,
        aliases=("--reuse-db",),
    ),
    Option(
        "create_db",
        "bool",
        "Rebuild the test database this run, even with reuse_db (and a throwaway server's "
        "kept data).",
        default=False,
        aliases=("--create-db",),
    ),
    Option(
        "drop_db",
        "bool",
        "Drop the test database at the end, even when keep_db or reuse_db is set.",
        default=False,
        aliases=("--drop-db",),
    ),
    Option(
        "no_db",
        "bool",
        "No database at all: tests that need one are skipped with the reason.",
        default=False,
        aliases=("--no-db",),
    ),
    Option(
        "echo",
        "bool",
        "Log the SQL that tests run (shown with the output of failing tests).",
        default=False,
        aliases=("--echo-db",),
    ),
    Option(
        "app_sessions",
        "list",
        "Import paths (pkg.module:attr) of the application's own sessionmaker, "
        "async_sessionmaker or scoped_session objects, bound to the test's connection "
        "for each test.",
        default=(),
        cli=False,
        separator=r"[\s,]+",
    ),
    Option(
        "flask_app",
        "import",
        "Import path (pkg.module:attr) of the Flask app using Flask-SQLAlchemy 3, or of its "
        "factory: served by the alchemy_flask_app fixture, its engines and db.session bound "
        "to the test's connection in every test that uses it.",
        default=None,
        cli=False,
    ),
    Option(
        "overrides",
        "list",
        "FastAPI dependency overrides, APP=DEPENDENCY (myapp.main:app=myapp.deps:get_db): "
        "for each test the dependency yields sessions on the test's connection.",
        default=(),
        cli=False,
        separator=r"[\s,]+",
    ),
    Option(
        "override_sessions",
        "choice",
        "What alchemy_override and alchemy_overrides give each request: per_request, a "
        "session of its own on the test's connection, closed when the request ends, as the "
        "app's dependency does; shared, the test's own alchemy_session (one identity map "
        "with the test, as in the hand-written override that returns the test's session).",
        default="per_request",
        choices=OVERRIDE_SESSIONS,
        cli=False,
        metavar="MODE",
    ),
    Option(
        "block_unmarked",
        "bool",
        "A test without the alchemy_db marker or a database fixture that uses an object "
        "listed in alchemy_app_sessions, or connects to the test database, fails, and nothing "
        "reaches the database. Fixtures wider than a test are blocked too, outside "
        "alchemy_blocker.unblock().",
        default=True,
        cli=False,
    ),
    Option(
        "reap",
        "bool",
        "At start-up, drop the test databases and stop the throwaway servers that pytest "
        "runs which died (killed, crashed) left behind, and say what was reaped. This also "
        "happens by itself at the first database test.",
        default=False,
    ),
    Option(
        "leak_check",
        "choice",
        "After each test, check the database is back at its baseline: fail the "
        "test that leaked (and clean up), warn, or off.",
        default="fail",
        choices=LEAK_CHECK_MODES,
        metavar="MODE",
    ),
    Option(
        "lock_timeout",
        "float",
        "Seconds any lock wait may block before failing with the name of the "
        "blocking session. Applies to every session on the test database, the app's own "
        "engines, threads and subprocesses too (SQLite: the busy timeout of the plugin's "
        "connections). Bounds waiting, never the running time of statements.",
        default=30.0,
        metavar="SECONDS",
        validate=_positive,
    ),
    Option(
        "connect_timeout",
        "float",
        "Seconds any connection the plugin opens may take to be established before failing "
        "with the server's name; a connect_timeout in the URL wins.",
        default=10.0,
        metavar="SECONDS",
        validate=_positive,
    ),
)

OPTIONS_BY_NAME: Mapping[str, Option] = {option.name: option for option in OPTIONS}


@dataclass(frozen=True)
class Settings:
    """The resolved settings of a run, with the source of each value."""

    url: URL | None = None
    test_prefix: str = "test_"
    server: str | None = None
    server_port: int | None = None
    metadata: str | None = None
    schema: str | None = None
    alembic_config: str | None = None
    downgrade_check: bool = False
    migration_checks: tuple[str, ...] = ()
    irreversible: tuple[str, ...] = ()
    drift_ignore: tuple[str, ...] = ()
    drift_extra_tables: bool = False
    init_sql: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    seed: str | None = None
    seed_in_template: bool = False
    template_cache: bool = True
    template_keep: int = 3
    isolation: str = "savepoint"
    keep_tables: tuple[str, ...] = ("alembic_version",)
    keep_db: bool = False
    reuse_db: bool = False
    create_db: bool = False
    drop_db: bool = False
    no_db: bool = False
    echo: bool = False
    app_sessions: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    override_sessions: str = "per_request"
    flask_app: str | None = None
    block_unmarked: bool = True
    reap: bool = False
    leak_check: str = "fail"
    lock_timeout: float = 30.0
    connect_timeout: float = 10.0
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def shares_sessions(self) -> bool:
        """Whether overridden dependencies give requests the test's own session."""
        return self.override_sessions == "shared"

    def source(self, name: str) -> str:
        return self.sources.get(name, "default")

    def describe(self) -> list[tuple[str, str, str]]:
        """(name, rendered value, source) for every setting, as the header shows them."""
        rows = []
        for option in OPTIONS:
            value = getattr(self, option.name)
            rows.append((option.name, render_value(value), self.source(option.name)))
        return rows


def render_value(value: Any) -> str:
    if hasattr(value, "render_as_string"):
        return render_url(value)
    if isinstance(value, tuple):
        return ", ".join(value) if value else "-"
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class RawValue:
    """A value before conversion, and where it came from."""

    value: Any
    source: str


def _problem(option: Option, raw: RawValue, text: str) -> ConfigurationError:
    return ConfigurationError(
        message(f"{option.name} = {_shown(option, raw.value)!r} (from {raw.source}): {text}")
    )


def _shown(option: Option, value: Any) -> Any:
    if option.kind == "url" and isinstance(value, str):
        return mask_password(value)
    return value


_IDENTIFIER = r"[A-Za-z_]\w*"
_DOTTED = rf"{_IDENTIFIER}(\.{_IDENTIFIER})*"
_IMPORT_PATH = re.compile(rf"^{_DOTTED}(:{_DOTTED})?$")


def _split_list(option: Option, value: Any) -> tuple[str, ...]:
    lines: Sequence[Any] = value if isinstance(value, (list, tuple)) else [value]
    items = [part for line in lines for part in re.split(option.separator, str(line))]
    return tuple(item.strip() for item in items if item.strip())


def _convert(option: Option, raw: RawValue, choices: Sequence[str]) -> Any:
    value = _converted(option, raw, choices)
    problem = option.validate(value) if option.validate is not None else None
    if problem is not None:
        raise _problem(option, raw, problem)
    return value


def _converted(option: Option, raw: RawValue, choices: Sequence[str]) -> Any:
    value = raw.value
    if isinstance(value, str) and not value.strip() and option.kind != "list":
        raise _problem(
            option,
            raw,
            f"the value is empty. Remove {_remove_hint(raw.source)} or give it a value"
            + (f" (one of: {', '.join(choices)})" if choices else "")
            + ".",
        )
    kind = option.kind
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in TRUE:
            return True
        if text in FALSE:
            return False
        raise _problem(option, raw, "expected a boolean: true/false, yes/no, on/off or 1/0.")
    if kind == "choice":
        text = str(value).strip()
        if text not in choices:
            raise _problem(option, raw, f"unknown value. Valid choices: {', '.join(choices)}.")
        return text
    if kind in ("float", "int"):
        try:
            number: float = float(value) if kind == "float" else int(str(value).strip())
        except ValueError:
            raise _problem(option, raw, f"expected {_article(kind)} number.") from None
        if not math.isfinite(number):
            raise _problem(option, raw, "expected a finite number.")
        if number < 0:
            raise _problem(option, raw, "expected a positive number.")
        return number
    if kind == "url":
        try:
            return parse_url(str(value).strip())
        except ValueError:
            raise _problem(
                option,
                raw,
                "not a database URL. Expected a SQLAlchemy URL such as "
                "postgresql+psycopg://user:password@host/app or sqlite:///data/app.db.",
            ) from None
    if kind == "import":
        text = str(value).strip()
        if not _IMPORT_PATH.match(text) or (":" not in text and "." not in text):
            raise _problem(
                option,
                raw,
                "expected an import path such as myapp.models:Base (module, a colon, "
                "then the attribute).",
            )
        return text
    if kind == "list":
        return _split_list(option, value)
    return str(value).strip()


def _article(kind: str) -> str:
    return "an integer" if kind == "int" else "a"


def _remove_hint(source: str) -> str:
    if source.startswith("env"):
        return "the environment variable"
    if source.startswith("ini"):
        return "the ini line"
    return "the option"


def read(
    cli: Mapping[str, Any],
    env: Mapping[str, str],
    ini: Mapping[str, Any],
    *,
    ini_file: str | None = None,
    alias_used: Callable[[Option], str | None] | None = None,
    choices: Mapping[str, Sequence[str]] | None = None,
    unchecked: Sequence[str] = (),
) -> Settings:
    """Resolve every option: command line, then environment, then ini file, then default.

    ``cli`` maps option names to the parsed flag value (None when absent),
    ``ini`` maps option names to the ini value (None when absent). ``choices``
    replaces an option's choices for this run (the isolation strategies hooks
    added); the choices of the options in ``unchecked`` are not checked (read again
    later, once every choice is known). Raises :class:`ConfigurationError` for the
    first value that cannot work.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in OPTIONS:
        raw = _pick(option, cli, env, ini, ini_file, alias_used)
        if raw is None:
            values[option.name] = option.default
            continue
        allowed = (choices or {}).get(option.name, option.choices)
        if option.name in unchecked:
            allowed = (str(raw.value).strip(),)
        values[option.name] = _convert(option, raw, allowed)
        sources[option.name] = raw.source
    settings = Settings(**values, sources=sources)
    _check_combinations(settings)
    return settings


def _pick(
    option: Option,
    cli: Mapping[str, Any],
    env: Mapping[str, str],
    ini: Mapping[str, Any],
    ini_file: str | None,
    alias_used: Callable[[Option], str | None] | None,
) -> RawValue | None:
    given = cli.get(option.name)
    if given is not None:
        flag = (alias_used(option) if alias_used else None) or option.flag
        return RawValue(given, f"command line {flag}")
    if option.env in env:
        return RawValue(env[option.env], f"env {option.env}")
    from_ini = ini.get(option.name)
    if from_ini is not None:
        where = f" in {ini_file}" if ini_file else ""
        return RawValue(from_ini, f"ini {option.ini}{where}")
    return None


def _check_combinations(settings: Settings) -> None:
    if settings.url is not None:
        check_url_query(settings.url, settings.source("url"))
    if settings.server_port is not None and settings.server is None:
        raise ConfigurationError(
            message(
                f"server_port = {settings.server_port} (from {settings.source('server_port')}) "
                "needs a throwaway server: also set alchemy_server = postgresql, or remove "
                "server_port."
            )
        )
    if settings.url is not None and settings.server is not None and settings.url.host:
        raise ConfigurationError(
            message(
                f"url = {render_url(settings.url)!r} (from {settings.source('url')}) names "
                f"the host {settings.url.host!r}, but server = {settings.server} (from "
                f"{settings.source('server')}) starts a throwaway local server. With a "
                "throwaway server, give a URL without host (for example "
                "postgresql+asyncpg:///app, to choose the driver and database name), or "
                "remove the server setting to use the server named in the URL."
            )
        )
