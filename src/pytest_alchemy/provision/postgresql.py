"""PostgreSQL: test databases, their records, and the lock timeout of every connection.

* Databases are created with ``CREATE DATABASE`` on an AUTOCOMMIT connection
  to the maintenance database, retried while the template is briefly in use,
  and dropped with ``DROP DATABASE ... WITH (FORCE)`` (other sessions are
  terminated first on servers older than 13). Names are quoted and kept within
  63 bytes.
* Each database the plugin creates carries its record as the database comment
  (``COMMENT ON DATABASE``), readable from any database on the server, so the
  next run can reap what a dead run left behind.
* Every connection of the plugin gets ``lock_timeout`` in its startup packet (no
  extra round trip, and ``RESET ALL`` keeps it); every other session on a test
  database gets it as a default of the database (``ALTER DATABASE ... SET``),
  set when the database is created, cloned or reused.

What is checked on a connection after each test is in ``checks/postgresql.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from sqlalchemy import String, event, literal, text
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from ..errors import ProvisionError, first_line, message
from ..urls import render_url, sync_url
from .base import Provisioner, Record
from .connector import Connector

MAINTENANCE_DATABASES = ("postgres", "template1")
OBJECT_IN_USE = "55006"
LOCK_NOT_AVAILABLE = "55P03"

SESSION_COLUMNS = (
    "pid::text, coalesce(nullif(application_name, ''), '-'), coalesce(state, '-'), "
    "to_char(coalesce(xact_start, backend_start), 'HH24:MI:SS'), left(query, 100)"
)
"""How a session of ``pg_stat_activity`` is described in messages (see
:func:`describe_session`)."""

TEMPLATE_SESSIONS = (
    f"SELECT {SESSION_COLUMNS} FROM pg_stat_activity "
    "WHERE datname = :template AND pid <> pg_backend_pid() ORDER BY backend_start"
)
"""The sessions on a template, which CREATE DATABASE must copy alone."""


def describe_session(entry: Sequence[Any]) -> str:
    """One row of :data:`SESSION_COLUMNS`, as messages name a session."""
    pid, application, state, since, query = (str(part) for part in entry)
    who = "" if application == "-" else f" ({application})"
    return f"pid {pid}{who}, {state} since {since}, last statement: {query!r}"


def _literal(connection: Connection, value: str) -> str:
    return str(
        literal(value, String()).compile(
            dialect=connection.dialect, compile_kwargs={"literal_binds": True}
        )
    )


def lock_timeout_ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def quote(connection: Connection, name: str) -> str:
    """An identifier, always quoted."""
    return connection.dialect.identifier_preparer.quote_identifier(name)


class PostgreSQLProvisioner(Provisioner):
    name: ClassVar[str] = "postgresql"
    name_limit: ClassVar[int] = 63
    capabilities: ClassVar[frozenset[str]] = frozenset({"clone"})
    # The connection returned last is handed out next: a test gets the one the test
    # before it used, whose server process has the plugin's statements planned, while
    # the one that put tables back (which empties that cache) waits in the pool.
    lifo_pools: ClassVar[bool] = True

    def __init__(
        self, url: URL, prefix: str, *, lock_timeout: float, connect_timeout: float = 10.0
    ) -> None:
        super().__init__(url, prefix, lock_timeout=lock_timeout, connect_timeout=connect_timeout)
        self._connectors: dict[str, Connector] = {}
        self._maintenance: str | None = None
        self._admin_lock = threading.Lock()
        """The heartbeat thread and the run share the admin connections."""

    # -- naming ---------------------------------------------------------------

    def configured_database(self) -> str | None:
        return self.url.database or None

    def test_url(self, name: str) -> URL:
        return self.url.set(database=name)

    # -- admin access ---------------------------------------------------------

    def _connector(self, database: str) -> Connector:
        connector = self._connectors.get(database)
        if connector is None:
            url = self.url.set(database=database)
            connector = Connector(
                url,
                connect_args=lambda chosen: self.connect_args(chosen, {}),
                persistent=self.persistent,
            )
            self._connectors[database] = connector
        return connector

    def admin(self, fn: Any) -> Any:
        """Run ``fn(connection)`` on the maintenance database, AUTOCOMMIT."""
        with self._admin_lock:
            return self._admin(fn)

    def _admin(self, fn: Any) -> Any:
        if self._maintenance is not None:
            return self._connector(self._maintenance).run(fn)
        last: DBAPIError | None = None
        for database in MAINTENANCE_DATABASES:
            try:
                result = self._connector(database).run(fn)
            except DBAPIError as error:
                if _is_missing_database(error):
                    last = error
                    continue
                raise self._unreachable(error) from None
            self._maintenance = database
            return result
        assert last is not None
        raise self._unreachable(last) from None

    def _unreachable(self, error: DBAPIError) -> ProvisionError:
        return ProvisionError(
            message(
                f"cannot reach the PostgreSQL server of {render_url(self.url)}: "
                f"{first_line(error)}. "
                "Is the server running and does the URL's user exist with that password? "
                "Fix alchemy_url (or ALCHEMY_URL / --alchemy-url), or set alchemy_server = "
                "postgresql to let pytest-alchemy start a throwaway server."
            )
        )

    def close(self) -> None:
        for connector in self._connectors.values():
            connector.close()
        self._connectors.clear()

    def monitor(self) -> Connector | None:
        """Holds the run's connection for checks that need not run on the test's own: to
        the maintenance database, so it never counts as a session on the test database."""
        if self._maintenance is None:
            return None
        return self._connector(self._maintenance)

    # -- provisioning ---------------------------------------------------------

    def template_problem(self) -> str | None:
        if sync_url(self.url, required=False) is None:
            return (
                "the lock that serialises template builds needs a sync PostgreSQL driver "
                "(pip install 'pytest-alchemy[postgresql]')"
            )
        return None

    def _create(self, name: str, record: Record) -> None:
        self._copy("template1", name, record)

    def _clone(self, template: str, name: str, record: Record, *, small: bool = False) -> None:
        self._copy(template, name, record, small=small)

    def _copy(self, template: str, name: str, record: Record, *, small: bool = False) -> None:
        """CREATE DATABASE from ``template``, retried while other sessions are on it.

        ``small``: from PostgreSQL 15 on, copied file by file (``STRATEGY FILE_COPY``),
        several times faster than the default block-by-block copy through the WAL for a
        database of a few megabytes, at the price of a checkpoint.
        """
        deadline = time.monotonic() + self.lock_timeout

        def create(connection: Connection) -> None:
            sql = f"CREATE DATABASE {quote(connection, name)}"
            if template != "template1":
                sql += f" TEMPLATE {quote(connection, template)}"
            major = (connection.dialect.server_version_info or (0,))[0]
            if small and isinstance(major, int) and major >= 15:
                sql += " STRATEGY FILE_COPY"
            while True:
                try:
                    connection.exec_driver_sql(sql)
                    break
                except OperationalError as error:
                    # "source database ... is being accessed by other users"
                    if _sqlstate(error) != OBJECT_IN_USE:
                        raise
                    if time.monotonic() > deadline:
                        raise self._template_in_use(connection, template, name) from None
                    time.sleep(0.1)
            connection.exec_driver_sql(self._comment_sql(connection, name, record))

        self.admin(create)

    def _template_in_use(self, connection: Connection, template: str, name: str) -> ProvisionError:
        rows = connection.execute(text(TEMPLATE_SESSIONS), {"template": template}).all()
        sessions = "; ".join(describe_session(row) for row in rows) or "(gone by now)"
        return ProvisionError(
            message(
                f"cannot create the test database {name}: CREATE DATABASE copies {template}, "
                f"and other sessions stayed connected to {template} for longer than "
                f"alchemy_lock_timeout ({self.lock_timeout:g} s): {sessions}. Disconnect "
                f"them (a tool left connected to {template}, usually), then run again."
            )
        )

    @contextmanager
    def _exclusive(self, key: str, timeout: float | None) -> Iterator[None]:
        """A session advisory lock on a connection of its own to the maintenance
        database: the server releases it when that connection ends, also when the
        run holding it is killed."""
        digest = hashlib.sha1(f"pytest-alchemy:{key}".encode()).digest()
        first, second = (int.from_bytes(digest[i : i + 4], "big", signed=True) for i in (0, 4))
        self.admin(lambda connection: None)  # finds the maintenance database
        assert self._maintenance is not None
        connector = Connector(
            self.url.set(database=self._maintenance),
            connect_args=lambda chosen: self.connect_args(chosen, {}),
        )
        try:
            connection = connector.hold()
            if connection is None:
                raise ProvisionError(
                    message(
                        f"cannot hold the lock {key!r}: no sync PostgreSQL driver is "
                        "installed. Install pytest-alchemy[postgresql]."
                    )
                )
            wait = "0" if timeout is None else str(max(1, round(timeout * 1000)))
            connection.exec_driver_sql(f"SET lock_timeout = {wait}")
            try:
                connection.exec_driver_sql(f"SELECT pg_advisory_lock({first}, {second})")
            except OperationalError as error:
                if _sqlstate(error) != LOCK_NOT_AVAILABLE or timeout is None:
                    raise
                raise self._locked_out(key, timeout) from None
            try:
                yield
            finally:
                with contextlib.suppress(DBAPIError):
                    connection.exec_driver_sql(f"SELECT pg_advisory_unlock({first}, {second})")
        finally:
            connector.close()

    def _bound_sessions(self, name: str) -> None:
        """``lock_timeout`` as a default of the database itself: every session that
        connects to it later starts with it, whoever opens it."""
        milliseconds = lock_timeout_ms(self.lock_timeout)

        def alter(connection: Connection) -> None:
            connection.exec_driver_sql(
                f"ALTER DATABASE {quote(connection, name)} SET lock_timeout = {milliseconds}"
            )

        try:
            self.admin(alter)
        except DBAPIError as error:
            raise ProvisionError(
                message(
                    f"cannot make lock_timeout a default of the test database {name}: "
                    f"{first_line(error)}. Without it, a session the app opens on that "
                    "database could wait for the test's locks forever. Run the tests as the "
                    "user owning the database, or let this run build a new one "
                    "(--alchemy-create-db)."
                )
            ) from None

    def _comment_sql(self, connection: Connection, name: str, record: Record) -> str:
        comment = _literal(connection, record.to_json())
        return f"COMMENT ON DATABASE {quote(connection, name)} IS {comment}"

    def _drop(self, name: str) -> None:
        def drop(connection: Connection) -> None:
            quoted = quote(connection, name)
            major = (connection.dialect.server_version_info or (0,))[0]
            if isinstance(major, int) and major >= 13:
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
                return
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}")

        self.admin(drop)

    def exists(self, name: str) -> bool:
        def exists(connection: Connection) -> bool:
            found = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            return found is not None

        return bool(self.admin(exists))

    def read_record(self, name: str) -> Record | None:
        def read(connection: Connection) -> str | None:
            return connection.execute(
                text(
                    "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                    "WHERE datname = :name"
                ),
                {"name": name},
            ).scalar()

        return Record.from_json(self.admin(read))

    def write_record(self, name: str, record: Record) -> None:
        self.admin(
            lambda connection: connection.exec_driver_sql(
                self._comment_sql(connection, name, record)
            )
        )

    def records(self) -> Mapping[str, Record]:
        prefix = self.guard.prefix

        def read(connection: Connection) -> list[tuple[str, str | None]]:
            rows = connection.execute(
                text(
                    "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database "
                    "WHERE left(datname, length(:prefix)) = :prefix"
                ),
                {"prefix": prefix},
            ).all()
            return [(str(row[0]), row[1]) for row in rows]

        found: dict[str, Record] = {}
        for name, comment in self.admin(read):
            record = Record.from_json(comment)
            if record is not None:
                found[name] = record
        return found

    def server_version(self) -> str:
        return str(self.admin(lambda c: c.exec_driver_sql("SHOW server_version").scalar()))

    # -- connections ----------------------------------------------------------

    def connect_args(self, url: URL, connect_args: Mapping[str, Any]) -> dict[str, Any]:
        """``connect_args`` plus the lock timeout, in the startup packet of the URL's driver,
        and the connect timeout (unless the URL names one)."""
        merged = dict(connect_args)
        milliseconds = lock_timeout_ms(self.lock_timeout)
        driver = url.get_driver_name()
        given = "connect_timeout" in url.query
        if driver == "asyncpg":
            settings = dict(merged.get("server_settings") or {})
            settings.setdefault("lock_timeout", str(milliseconds))
            merged["server_settings"] = settings
            if not given:
                merged.setdefault("timeout", self.connect_timeout)
        elif driver in ("psycopg", "psycopg_async", "psycopg2"):
            option = f"-c lock_timeout={milliseconds}"
            existing = merged.get("options") or url.query.get("options")
            merged["options"] = f"{existing} {option}" if existing else option
            if not given:
                # libpq counts whole seconds.
                merged.setdefault("connect_timeout", max(1, math.ceil(self.connect_timeout)))
        return merged

    def engine_options(self, url: URL, options: Mapping[str, Any]) -> dict[str, Any]:
        merged = dict(options)
        merged["connect_args"] = self.connect_args(url, options.get("connect_args") or {})
        return merged

    def install_connect_events(self, engine: Engine, options: Mapping[str, Any]) -> None:
        if engine.dialect.driver in ("psycopg", "psycopg_async", "psycopg2", "asyncpg"):
            return
        milliseconds = lock_timeout_ms(self.lock_timeout)

        @event.listens_for(engine, "connect")
        def set_lock_timeout(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"SET lock_timeout = {milliseconds}")
            cursor.close()
            dbapi_connection.commit()


def _code(error: BaseException) -> str | None:
    for attribute in ("sqlstate", "pgcode"):
        value = getattr(error, attribute, None)
        if isinstance(value, str):
            return value
    return None


def _sqlstate(error: DBAPIError) -> str | None:
    return _code(error.orig) if error.orig is not None else None


def _is_missing_database(error: DBAPIError) -> bool:
    return isinstance(error, (OperationalError, ProgrammingError)) and (
        "does not exist" in str(error.orig) and "database" in str(error.orig)
    )
