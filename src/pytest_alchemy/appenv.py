"""The app's own settings, pointed at the test database: ``alchemy_env``.

Apps read their database URL from the environment when they are imported
(``engine = create_engine(os.environ["DATABASE_URL"])`` at module level, or a
pydantic settings class built from ``POSTGRES_SERVER``, ``POSTGRES_DB``...).
Each entry of ``alchemy_env`` names one such variable:

* a bare ``NAME`` gets the URL of the test database, in the spelling the app
  expects: the driver of the variable's current value when it has one
  (``postgresql+asyncpg://`` stays async, ``postgresql://`` stays without a
  driver), else the configured URL's;
* ``NAME=template`` gets the template filled in from :data:`FIELDS`.

Promises kept here:

* The variables lead to the test database and nowhere else: a template whose
  value is a URL of another database, or that gives a database-name variable
  another name (a hard-coded ``POSTGRES_DB=app``), is refused before anything
  runs.
* The variables hold the real password (the app must connect); every line
  printed about them masks it.
* What the variables held before is put back at the end of the run.

This module does not import pytest; the plugin layer decides when it runs.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigurationError, SafetyError, message
from .urls import (
    ASYNC_ONLY,
    as_url,
    async_url,
    backend_of,
    driver_of,
    mask_password,
    render_url,
    sync_url,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from .servers import ThrowawayServer
    from .settings import Settings

FIELDS: Mapping[str, str] = {
    "url": "the test database URL, with the configured driver",
    "sync_url": "the test database URL with a sync driver",
    "async_url": "the test database URL with an async driver",
    "host": "the server's host (a socket directory for a server on a unix socket)",
    "port": "the server's port (the backend's default when the URL names none)",
    "database": "the test database's name (for SQLite: the file's path)",
    "username": "the user name",
    "password": "the password",
    "driver": "the URL's scheme, such as postgresql+psycopg",
}
"""The fields a template may use, and what each is."""

DEFAULT_PORTS: Mapping[str, int] = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DATABASE_NAME = re.compile(r"^(PGDATABASE|(.*_)?(DB|DATABASE)(_?NAME)?)$", re.IGNORECASE)
"""Variables that hold a database's name: POSTGRES_DB, MYSQL_DATABASE, DB_NAME..."""

MASK = "***"


@dataclass(frozen=True)
class Entry:
    """One entry of ``alchemy_env``: a variable, and its template (None: the URL)."""

    name: str
    template: str | None = None

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(_fields(self.template)) if self.template is not None else frozenset()

    def __str__(self) -> str:
        return self.name if self.template is None else f"{self.name}={self.template}"


def _fields(template: str) -> list[str]:
    """The field names of ``template``; ValueError for braces that do not pair up."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def problem_with(entries: Sequence[str]) -> str | None:
    """What is wrong with the ``alchemy_env`` entries, in a few words, or None."""
    seen: set[str] = set()
    for text in entries:
        name, equals, template = text.partition("=")
        if not _NAME.match(name):
            return (
                f"{text!r} does not start with a variable name: give NAME (it gets the test "
                "database URL) or NAME=template, such as POSTGRES_DB={database}."
            )
        if name in seen:
            return f"{name} is given twice: give each variable once."
        seen.add(name)
        if not equals:
            continue
        try:
            used = _fields(template)
        except ValueError as error:
            return (
                f"the template of {name} ({template!r}) is not a template: {error}. Write a "
                "literal brace as {{ or }}."
            )
        for used_name in used:
            if used_name not in FIELDS:
                return (
                    f"the template of {name} ({template!r}) uses the unknown field "
                    f"{{{used_name}}}. Known fields: "
                    + ", ".join(f"{{{known}}}" for known in FIELDS)
                    + "."
                )
    return None


def parse(entries: Sequence[str]) -> tuple[Entry, ...]:
    """The entries of ``alchemy_env`` (checked by the settings already)."""
    found = []
    for text in entries:
        name, equals, template = text.partition("=")
        found.append(Entry(name, template if equals else None))
    return tuple(found)


def tcp_url(url: URL, port: int) -> URL:
    """``url`` through TCP on 127.0.0.1 ``port`` instead of a unix socket."""
    query = {key: value for key, value in url.query.items() if key not in ("host", "port")}
    return url.set(host="127.0.0.1", port=port, query=query)


def _query_value(url: URL, key: str) -> str:
    value = url.query.get(key)
    if isinstance(value, tuple):
        return str(value[0]) if value else ""
    return "" if value is None else str(value)


def field_values(url: URL) -> dict[str, Callable[[], str]]:
    """How to get each field's value for the test database ``url``; computed only when
    a template uses it (the sync and async twins need their driver installed)."""
    backend = backend_of(url)

    def render(chosen: URL | None) -> str:
        assert chosen is not None
        return chosen.render_as_string(hide_password=False)

    def port() -> str:
        if url.port is not None:
            return str(url.port)
        given = _query_value(url, "port")
        if given:
            return given
        default = DEFAULT_PORTS.get(backend)
        return str(default) if default is not None else ""

    return {
        "url": lambda: render(url),
        "sync_url": lambda: render(sync_url(url, purpose="alchemy_env's {sync_url}")),
        "async_url": lambda: render(async_url(url, purpose="alchemy_env's {async_url}")),
        "host": lambda: url.host or _query_value(url, "host"),
        "port": port,
        "database": lambda: url.database or "",
        "username": lambda: url.username or "",
        "password": lambda: url.password if isinstance(url.password, str) else "",
        "driver": lambda: url.drivername,
    }


def spelled_like(url: URL, current: str | None, name: str, source: str) -> URL:
    """The test database ``url`` in the spelling of the variable's ``current`` value."""
    if current is None or not current.strip():
        return url
    found = as_url(current) if "://" in current else None
    if found is None:
        raise ConfigurationError(
            message(
                f"alchemy_env (from {source}) sets {name} to the test database URL, but {name} "
                f"is already set to {mask_password(current)!r}, which is not a database URL, "
                "so the driver the app expects cannot be told. Unset it, set it to a URL such "
                f"as postgresql+asyncpg://host/app, or give a template: {name}={{async_url}} "
                f"or {name}={{sync_url}}."
            )
        )
    if backend_of(found) == backend_of(url):
        return url.set(drivername=found.drivername)
    driver = driver_of(found)
    purpose = f"alchemy_env's {name} (now {found.drivername}://...)"
    if driver is None:
        return url.set(drivername=backend_of(url))
    if driver in ASYNC_ONLY:
        return async_url(url, purpose=purpose)
    twin = sync_url(url, purpose=purpose)
    assert twin is not None
    return twin


@dataclass
class AppEnvironment:
    """The variables ``alchemy_env`` set for the app, and what they held before."""

    values: dict[str, str]
    """Each variable and the value it was given (with the real password)."""
    database: str
    """The test database they lead to, as the report names it."""
    source: str
    """Where ``alchemy_env`` came from."""
    password: str = ""
    saved: dict[str, str | None] = field(default_factory=dict)
    """What each variable held before (None: it was not set)."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.values)

    def masked(self, value: str) -> str:
        """``value`` as it may be printed: the password masked."""
        shown = mask_password(value) if "://" in value else value
        if self.password:
            shown = shown.replace(self.password, MASK)
        return shown

    def describe(self) -> str:
        """The variables and their values, masked, for the report header."""
        return ", ".join(f"{name}={self.masked(value)}" for name, value in self.values.items())

    def hint(self) -> str:
        """A sentence for errors about a database the app's settings led elsewhere."""
        names = ", ".join(self.names)
        return (
            f"alchemy_env (from {self.source}) set {names} to the test database {self.database}; "
            "if the app (or its migrations' env.py) reads its database from another variable, "
            "add that variable to alchemy_env."
        )

    def apply(self, environ: MutableMapping[str, str]) -> None:
        for name, value in self.values.items():
            self.saved[name] = environ.get(name)
            environ[name] = value

    def repointed(self, run_database: str, database: str) -> dict[str, str]:
        """The variables' values leading to the test database ``database`` instead of
        the run's ``run_database`` (for a test that runs on a copy of its own)."""
        values = {}
        for name, value in self.values.items():
            url = as_url(value) if "://" in value else None
            if url is not None and url.database == run_database:
                values[name] = url.set(database=database).render_as_string(hide_password=False)
            else:
                values[name] = database if value == run_database else value
        return values

    @contextmanager
    def pointed_at(
        self, run_database: str, database: str, environ: MutableMapping[str, str]
    ) -> Iterator[None]:
        """While the block runs, the variables lead to ``database`` (see :meth:`repointed`)."""
        values = self.repointed(run_database, database)
        saved = {name: environ.get(name) for name in values}
        environ.update(values)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    environ.pop(name, None)
                else:
                    environ[name] = value

    def restore(self, environ: MutableMapping[str, str]) -> None:
        """Put back what the variables held before :meth:`apply` (once)."""
        for name, value in self.saved.items():
            if value is None:
                environ.pop(name, None)
            else:
                environ[name] = value
        self.saved.clear()


def build(
    entries: Sequence[Entry],
    url: URL,
    *,
    database: str,
    environ: Mapping[str, str],
    source: str,
) -> AppEnvironment:
    """The variables for the test database ``url`` (named ``database`` in reports),
    each checked to lead there. Raises :class:`ConfigurationError` (a
    :class:`SafetyError` for one that would lead elsewhere) for the first that cannot."""
    fields = field_values(url)
    password = fields["password"]()
    environment = AppEnvironment({}, database=database, source=source, password=password)
    for entry in entries:
        if entry.template is None:
            chosen = spelled_like(url, environ.get(entry.name), entry.name, source)
            value = chosen.render_as_string(hide_password=False)
        else:
            value = entry.template.format_map({name: fields[name]() for name in entry.fields})
        _check_leads_to_test(entry, value, url, environment, source)
        environment.values[entry.name] = value
    return environment


def _check_leads_to_test(
    entry: Entry, value: str, url: URL, environment: AppEnvironment, source: str
) -> None:
    test_database = url.database or ""
    wrong: str | None = None
    if "://" in value:
        found = as_url(value)
        if found is not None and not _same_database(found, url):
            wrong = f"the database {found.database or '(none)'!r}"
    elif _DATABASE_NAME.match(entry.name) and not _same_name(value, test_database):
        wrong = f"the database {value!r}"
    if wrong is None:
        return
    shown = environment.masked(value)
    raise SafetyError(
        message(
            f"alchemy_env (from {source}) would set {entry.name}={shown}, which leads the app "
            f"to {wrong}, not to the test database {environment.database}: the app's settings "
            "may lead only to the test database. Use the fields instead of a fixed name: "
            f"{entry.name}={{database}} for a name, {entry.name}={{url}} (or the bare name "
            f"{entry.name}) for a URL."
        )
    )


def _same_name(value: str, test_database: str) -> bool:
    if value == test_database:
        return True
    # SQLite: the same file, however it is written.
    try:
        return Path(value).resolve() == Path(test_database).resolve() and "/" in test_database
    except (OSError, ValueError):
        return False


def _same_database(found: URL, url: URL) -> bool:
    if backend_of(found) != backend_of(url):
        return False
    if not _same_name(found.database or "", url.database or ""):
        return False
    return not (found.host and url.host and found.host != url.host)


@dataclass
class Prepared:
    """The app's environment and the throwaway server started for it (if any)."""

    environment: AppEnvironment
    server: ThrowawayServer | None = None
    reaped_servers: list[str] = field(default_factory=list)
    test_url: URL | None = None
    """The test database URL the variables lead to, as the plugin will use it."""


def prepare(
    settings: Settings,
    *,
    worker: str | None,
    controller: bool,
    embedded: Path,
    server_cache: Path | None,
    environ: Mapping[str, str],
) -> Prepared:
    """The variables of ``settings.env`` for this process's test database.

    With a throwaway server, it is started now (on a free TCP port of 127.0.0.1, which
    every variable names), so that its address is known; a pytest-xdist
    controller, which runs no test, starts none and names the test database on a
    stand-in of the server.
    """
    from .plan import plan_database, source_url

    entries = parse(settings.env)
    source = settings.source("env")
    server: ThrowawayServer | None = None
    reaped: list[str] = []
    if settings.server is not None and not controller:
        from .servers import reap_orphans, start_server

        port = settings.server_port
        if port is None and entries:
            # The app gets an address it can parse: a URL whose host is a socket's
            # directory in the query (?host=/tmp/...) is refused by URL validators
            # such as pydantic's PostgresDsn, and a host variable cannot name a socket.
            port = 0
        reaped = [str(path) for path in reap_orphans()]
        server = start_server(
            settings.server, port=port, keep=server_cache, recreate=settings.create_db
        )
    try:
        url = source_url(settings, server=server.url if server else None, embedded=embedded)
        plan = plan_database(settings, url, worker=worker)
        test_url = plan.url
        env_url = test_url
        port_number = getattr(server, "port", None)
        if isinstance(port_number, int):
            env_url = tcp_url(test_url, port_number)
        env_url = _absolute_file(env_url)
        environment = build(
            entries,
            env_url,
            database=plan.describe(),
            environ=environ,
            source=source,
        )
    except BaseException:
        if server is not None:
            server.stop()
        raise
    return Prepared(environment, server, reaped, test_url)


def _absolute_file(url: URL) -> URL:
    """A SQLite file named relative to the working directory, as its absolute path: apps
    resolve a relative one against folders of their own (Flask-SQLAlchemy against the
    app's instance folder), which would be another file than the test database."""
    database = url.database or ""
    if (
        backend_of(url) != "sqlite"
        or database in ("", ":memory:")
        or database.startswith("file:")
        or Path(database).is_absolute()
    ):
        return url
    return url.set(database=str(Path(database).absolute()))


def check_run_database(prepared: Prepared, run_url: URL, origin: str) -> None:
    """The variables were set while pytest started, from the settings; the test database
    the run uses (``run_url``, from ``origin``) must be the one they lead to."""
    expected = prepared.test_url
    if expected is None:  # pragma: no cover - prepare() always names the test database
        return
    if _where(run_url) == _where(expected):
        return
    environment = prepared.environment
    raise ConfigurationError(
        message(
            f"alchemy_env (from {environment.source}) set {', '.join(environment.names)} to the "
            f"test database {environment.database} while pytest started, but {origin} leads "
            f"the tests to {render_url(run_url)}: "
            "the app would use another database than the tests. Configure the database with "
            "alchemy_url (or --alchemy-url, ALCHEMY_URL) instead of overriding the fixture, "
            "or remove alchemy_env and set the app's variables in that fixture."
        )
    )


def _where(url: URL) -> tuple[str, str | None, int | None, str, str]:
    return (
        backend_of(url),
        url.host,
        url.port,
        _query_value(url, "host"),
        url.database or "",
    )
