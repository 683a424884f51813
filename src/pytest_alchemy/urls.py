"""URLs: reading and printing them, which test database one leads to, which driver talks to it.

* A URL is printed with its password masked, also one that does not parse.

* ``.../app`` leads to the test database ``test_app`` on the same server (with
  the xdist worker's suffix, within the backend's name length limit); a name
  that already starts with the test prefix is used as it is.
* The URL's driver is used as given. Sync fixtures and the plugin's own
  provisioning need a sync driver: an async URL gets its sync twin when one is
  installed. Async fixtures need an async driver: a sync URL gets its async
  twin (asyncpg when installed, else psycopg's async mode; aiosqlite for
  SQLite). A driver that is missing is named together with the extra that
  installs it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import DriverMissingError, first_line, message

if TYPE_CHECKING:
    # SQLAlchemy is imported once a URL is actually given, not when pytest starts.
    from sqlalchemy.engine import URL


def parse_url(text: str) -> URL:
    """Parse a SQLAlchemy URL; raises ValueError for text that is not a URL."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(text)
    except ArgumentError as error:
        raise ValueError(str(error)) from None


def as_url(value: Any) -> URL | None:
    """``value`` (a URL or a string) as a URL; None when it is neither."""
    from sqlalchemy.engine import URL

    if isinstance(value, URL):
        return value
    if isinstance(value, str) and value.strip():
        try:
            return parse_url(value.strip())
        except ValueError:
            return None
    return None


def render_url(url: URL) -> str:
    """A URL as it may be printed: the password masked."""
    return url.render_as_string(hide_password=True)


_PASSWORD = re.compile(r"(://[^:/@]*:).*@")


def mask_password(text: str) -> str:
    """The password of a URL's text masked, whether or not it parses."""
    try:
        return render_url(parse_url(text))
    except ValueError:
        return _PASSWORD.sub(r"\1***@", text)


# driver name -> (importable module, pytest-alchemy extra that installs it)
DRIVER_MODULES: dict[str, tuple[str, str]] = {
    "psycopg": ("psycopg", "postgresql"),
    "psycopg_async": ("psycopg", "postgresql"),
    "psycopg2": ("psycopg2", "psycopg2"),
    "pg8000": ("pg8000", "pg8000"),
    "asyncpg": ("asyncpg", "asyncpg"),
    "pysqlite": ("sqlite3", "sqlite"),
    "aiosqlite": ("aiosqlite", "sqlite-async"),
    "pymysql": ("pymysql", "mysql"),
    "mysqldb": ("MySQLdb", "mysql"),
    "aiomysql": ("aiomysql", "mysql"),
    "asyncmy": ("asyncmy", "mysql"),
}

# backend -> drivers that can serve sync engines, best first
SYNC_DRIVERS: dict[str, tuple[str, ...]] = {
    "postgresql": ("psycopg", "psycopg2", "pg8000"),
    "sqlite": ("pysqlite",),
    "mysql": ("pymysql", "mysqldb"),
    "mariadb": ("pymysql", "mysqldb"),
}
# backend -> drivers that can serve async engines, best first
ASYNC_DRIVERS: dict[str, tuple[str, ...]] = {
    "postgresql": ("asyncpg", "psycopg"),
    "sqlite": ("aiosqlite",),
    "mysql": ("asyncmy", "aiomysql"),
    "mariadb": ("asyncmy", "aiomysql"),
}
# drivers that serve both families under one name
DUAL_DRIVERS = frozenset({"psycopg"})
ASYNC_ONLY = frozenset({"asyncpg", "aiosqlite", "psycopg_async", "asyncmy", "aiomysql"})

DEFAULT_DATABASE = "alchemy"
"""The app database name assumed when a server URL names no database."""

SYNC_PURPOSE = "sync fixtures (alchemy_session, alchemy_connection, ...)"
ASYNC_PURPOSE = "async fixtures (alchemy_async_session, ...)"


def import_problem(module: str) -> str | None:
    """Why ``module`` cannot be imported ("is not installed", or what importing it
    said), or None when it imports.

    Imported rather than looked up, so that a driver that is installed but broken
    (psycopg without its libpq, say) is found here, not deep inside a connection.
    """
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is not None and (module + ".").startswith(error.name + "."):
            return "is not installed"
        return f"cannot be imported ({type(error).__name__}: {first_line(error)})"
    except ImportError as error:
        return f"cannot be imported ({type(error).__name__}: {first_line(error)})"
    return None


def require_async_stack(purpose: str) -> None:
    """Raise a clear error when SQLAlchemy's asyncio layer cannot run: it needs greenlet."""
    problem = import_problem("greenlet") or import_problem("sqlalchemy.ext.asyncio")
    if problem is not None:
        raise DriverMissingError(
            message(
                f"{purpose} need greenlet, which SQLAlchemy's asyncio layer runs on, but the "
                f"module 'greenlet' {problem}. Install it (pip install "
                "'pytest-alchemy[asyncio]'; the extras of the async drivers, [asyncpg] and "
                "[sqlite-async], include it too)."
            )
        )


def is_installed(driver: str) -> bool:
    return import_problem(DRIVER_MODULES.get(driver, (driver, ""))[0]) is None


def install_advice(driver: str) -> str:
    """The command that installs ``driver``: its pytest-alchemy extra when it has one."""
    module, extra = DRIVER_MODULES.get(driver, (driver, ""))
    return f"pip install 'pytest-alchemy[{extra}]'" if extra else f"pip install {module}"


def driver_of(url: URL) -> str | None:
    """The driver named in the URL, or None for a bare ``postgresql://``."""
    return url.drivername.partition("+")[2] or None


def backend_of(url: URL) -> str:
    return url.get_backend_name()


def with_driver(url: URL, driver: str) -> URL:
    backend = backend_of(url)
    if backend == "sqlite" and driver == "pysqlite":
        return url.set(drivername="sqlite")
    return url.set(drivername=f"{backend}+{driver}")


def _missing(
    url: URL,
    driver: str,
    purpose: str,
    *,
    target: str | None = None,
    choices: tuple[str, ...] = (),
    family: str = "sync",
) -> DriverMissingError:
    """The missing-driver paragraph: who needs which driver, and how to install it.

    ``choices`` are the drivers that would do when the URL names none (``driver``
    is the best of them); ``target`` stands for the URL where it is a stand-in.
    """
    module = DRIVER_MODULES.get(driver, (driver, ""))[0]
    problem = import_problem(module) or "is not installed"
    where = target or render_url(url)
    if len(choices) > 1:
        names = ", ".join(choices[:-1]) + f" or {choices[-1]}"
        return DriverMissingError(
            message(
                f"{purpose} need a {family} driver for {where}: {names}, and none of them "
                f"can be imported (the module {module!r} {problem}). Install {driver} "
                f"({install_advice(driver)}), or name an installed driver in the URL."
            )
        )
    return DriverMissingError(
        message(
            f"{purpose} need the {driver} driver for {where}, but the module {module!r} "
            f"{problem}. Install it ({install_advice(driver)}), or name another installed "
            "driver in the URL."
        )
    )


def sync_url(
    url: URL, *, required: bool = True, purpose: str = SYNC_PURPOSE, target: str | None = None
) -> URL | None:
    """The URL with a driver that serves sync engines.

    A sync or dual driver named in the URL is kept; a URL without driver, or with an
    async-only one, gets the best installed sync driver of the backend. Without one,
    an async-only URL gives None when ``required`` is false (its async driver can do
    the work on a loop of its own); any other URL is an error either way.
    """
    backend = backend_of(url)
    driver = driver_of(url)
    if driver is not None and driver not in ASYNC_ONLY:
        if not is_installed(driver):
            raise _missing(url, driver, purpose, target=target)
        return url
    if backend == "sqlite" and driver is None:
        return url
    for candidate in SYNC_DRIVERS.get(backend, ()):
        if is_installed(candidate):
            return with_driver(url, candidate)
    if not required and driver is not None:
        return None
    preferred = SYNC_DRIVERS.get(backend, (driver or backend,))[0]
    raise _missing(url, preferred, purpose, target=target, choices=SYNC_DRIVERS.get(backend, ()))


def async_url(url: URL, *, purpose: str = ASYNC_PURPOSE, target: str | None = None) -> URL:
    """The URL with a driver that serves async engines (the async twin of a sync URL)."""
    backend = backend_of(url)
    driver = driver_of(url)
    if driver is not None and (driver in ASYNC_ONLY or driver in DUAL_DRIVERS):
        if not is_installed(driver):
            raise _missing(url, driver, purpose, target=target)
        return url
    for candidate in ASYNC_DRIVERS.get(backend, ()):
        if is_installed(candidate):
            return with_driver(url, candidate)
    preferred = ASYNC_DRIVERS.get(backend, (backend,))[0]
    raise _missing(
        url,
        preferred,
        purpose,
        target=target,
        choices=ASYNC_DRIVERS.get(backend, ()),
        family="async",
    )


def require_driver(url: URL, *, target: str | None = None) -> None:
    """Raise the missing-driver error for a URL whose named driver is not installed."""
    driver = driver_of(url)
    if driver is not None and not is_installed(driver):
        raise _missing(url, driver, "connections to the test database", target=target)


def bounded_name(name: str, limit: int) -> str:
    """``name`` cut to ``limit`` bytes, keeping it unique with a short hash when cut."""
    if len(name.encode()) <= limit:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    head = name.encode()[: limit - len(digest) - 1].decode(errors="ignore")
    return f"{head}_{digest}"


@dataclass(frozen=True)
class DerivedName:
    """The test database name derived from a configured one."""

    name: str
    derived: bool
    """False when the configured name already was a test database name."""


def derive_name(
    configured: str | None, prefix: str, *, worker: str | None = None, limit: int = 63
) -> DerivedName:
    """``app`` -> ``test_app``; ``test_app`` stays; a worker id adds ``_gw0``."""
    base = configured or DEFAULT_DATABASE
    derived = not base.startswith(prefix)
    name = f"{prefix}{base}" if derived else base
    if worker:
        name = f"{name}_{worker}"
    return DerivedName(bounded_name(name, limit), derived)


def database_identity(url: URL) -> tuple[str, str]:
    """What names one database, whichever driver, host spelling or engine reaches it."""
    backend = url.get_backend_name()
    database = url.database or ""
    if (
        backend == "sqlite"
        and database not in ("", ":memory:")
        and not database.startswith("file:")
    ):
        database = os.path.realpath(database)
    return backend, database
