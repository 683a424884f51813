"""SQLite: test database files, shared in-memory databases, and real savepoints.

* A file URL ``sqlite:///data/app.db`` leads to ``data/test_app.db``; the
  embedded default is a file under pytest's cache directory, so app code that
  opens its own connection sees the same data and ``reuse_db`` works. The
  record of a file lives beside it (``test_app.db.alchemy.json``).
* An in-memory URL becomes a named database on SQLite's memdb VFS (or a
  shared-cache memory database on SQLite older than 3.36), held open by a
  keeper connection for the run, so every engine of the process, sync and
  async, sees one database instead of a private one each.
* pysqlite's legacy transaction handling delays ``BEGIN`` until the first
  write, so a ``SAVEPOINT`` sent first is not part of the test's transaction
  and a commit inside a test would survive the rollback. Every engine the
  plugin makes gets SQLAlchemy's documented fix (connect: stop the driver's
  own transaction handling; begin: emit ``BEGIN``), unless the connection runs
  in PEP 249 mode (``autocommit=False``, Python 3.12+), which needs none.
* ``PRAGMA data_version`` tells, without a round trip, whether another
  connection committed since the last look.
"""

from __future__ import annotations

import os
import sqlite3
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine

from ..errors import ProvisionError, message
from .base import Backend, Guard, Record, StateProbe, closed_after_test

SIDECAR_SUFFIX = ".alchemy.json"
COMPANION_SUFFIXES = ("", "-journal", "-wal", "-shm", SIDECAR_SUFFIX)
MEMDB_MIN_VERSION = (3, 36, 0)
TRUE = frozenset({"1", "true", "yes", "on"})

# Pragmas a test can change on a connection that a rollback does not undo.
WATCHED_PRAGMAS = (
    "query_only",
    "recursive_triggers",
    "reverse_unordered_selects",
    "ignore_check_constraints",
    "foreign_keys",
    "legacy_alter_table",
    "automatic_index",
    "cell_size_check",
    "trusted_schema",
    "busy_timeout",
    "cache_size",
    "temp_store",
    "synchronous",
    "defer_foreign_keys",
)
STATE_SQL = (
    "SELECT (SELECT * FROM pragma_data_version()), "
    + ", ".join(f"(SELECT * FROM pragma_{pragma}())" for pragma in WATCHED_PRAGMAS)
    + ", (SELECT group_concat(name) FROM pragma_database_list()), "
    "(SELECT count(*) FROM sqlite_temp_master)"
)


def is_memory(url: URL) -> bool:
    database = url.database or ""
    if str(url.query.get("uri", "")).lower() in TRUE:
        return (
            url.query.get("mode") == "memory"
            or url.query.get("vfs") == "memdb"
            or database.startswith("file::memory:")
        )
    return database in ("", ":memory:")


def legacy_transactions(connect_args: Mapping[str, Any]) -> bool:
    """Whether sqlite3 connections made with ``connect_args`` delay BEGIN (legacy mode)."""
    legacy = getattr(sqlite3, "LEGACY_TRANSACTION_CONTROL", -1)
    return bool(connect_args.get("autocommit", legacy) == legacy)


class SQLiteBackend(Backend):
    name: ClassVar[str] = "sqlite"
    name_limit: ClassVar[int] = 200
    rolled_back_survivors: ClassVar[tuple[str, ...]] = ("pragmas", "temp_tables")
    collect_after_cancel: ClassVar[bool] = True

    def __init__(self, url: URL, guard: Guard, *, lock_timeout: float) -> None:
        super().__init__(url, guard, lock_timeout=lock_timeout)
        self.memory = is_memory(url)
        self._keepers: dict[str, sqlite3.Connection] = {}
        self._fresh_state: weakref.WeakKeyDictionary[Engine, tuple[Any, ...]] = (
            weakref.WeakKeyDictionary()
        )
        """Per engine without pool: the state its connections start in."""

    # -- naming ---------------------------------------------------------------

    def configured_database(self) -> str | None:
        if self.memory:
            return "memory"
        return Path(self.url.database or "").stem or None

    def test_url(self, name: str) -> URL:
        if self.memory:
            return self._memory_url(name)
        path = Path(self.url.database or "")
        suffix = path.suffix or ".db"
        return self.url.set(database=str(path.with_name(name + suffix)))

    def _memory_url(self, name: str) -> URL:
        query = dict(self.url.query)
        query.pop("mode", None)
        query.pop("cache", None)
        query["uri"] = "true"
        if sqlite3.sqlite_version_info >= MEMDB_MIN_VERSION:
            query["vfs"] = "memdb"
            database = f"file:/{name}"
        else:
            query["mode"] = "memory"
            query["cache"] = "shared"
            database = f"file:{name}"
        return self.url.set(database=database, query=query)

    def path(self, name: str) -> Path | None:
        """The file of the test database ``name``; None in memory."""
        if self.memory:
            return None
        return Path(self.test_url(name).database or "")

    def guarded_name(self, name: str) -> str:
        return name

    def describe(self, name: str) -> str:
        path = self.path(name)
        return str(path) if path is not None else f"{name} (in memory)"

    # -- provisioning ---------------------------------------------------------

    def _create(self, name: str, record: Record) -> None:
        url = self.test_url(name)
        path = self.path(name)
        if path is None:
            keeper = sqlite3.connect(_driver_target(url), uri=True, check_same_thread=False)
            self._keepers[name] = keeper
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(str(path))
            try:
                connection.execute("CREATE TABLE alchemy_probe (x INTEGER)")
                connection.execute("DROP TABLE alchemy_probe")
                connection.commit()
            finally:
                connection.close()
        except (OSError, sqlite3.Error) as error:
            raise ProvisionError(
                message(
                    f"cannot create the SQLite test database {path}: {error}. The directory "
                    f"{path.parent} must exist or be creatable, be writable and have free space. "
                    "Point alchemy_url at a writable place (for example "
                    "sqlite:///tmp/app.db), or free some disk space."
                )
            ) from None
        self.write_record(name, record)

    def _drop(self, name: str) -> None:
        keeper = self._keepers.pop(name, None)
        if keeper is not None:
            keeper.close()
        path = self.path(name)
        if path is None:
            return
        for suffix in COMPANION_SUFFIXES:
            Path(str(path) + suffix).unlink(missing_ok=True)

    def exists(self, name: str) -> bool:
        path = self.path(name)
        if path is None:
            return name in self._keepers
        return path.exists()

    def _sidecar(self, name: str) -> Path | None:
        path = self.path(name)
        return None if path is None else Path(str(path) + SIDECAR_SUFFIX)

    def read_record(self, name: str) -> Record | None:
        sidecar = self._sidecar(name)
        if sidecar is None:
            return None
        try:
            return Record.from_json(sidecar.read_text())
        except OSError:
            return None

    def write_record(self, name: str, record: Record) -> None:
        sidecar = self._sidecar(name)
        if sidecar is None:
            return
        temporary = sidecar.with_name(sidecar.name + f".{os.getpid()}")
        try:
            temporary.write_text(record.to_json())
            temporary.replace(sidecar)
        except OSError as error:
            raise ProvisionError(
                message(f"cannot write {sidecar}: {error}. The directory must be writable.")
            ) from None

    def records(self) -> Mapping[str, Record]:
        if self.memory:
            return {}
        folder = Path(self.url.database or "").parent
        found: dict[str, Record] = {}
        try:
            sidecars = list(folder.glob(f"{self.guard.prefix}*{SIDECAR_SUFFIX}"))
        except OSError:
            return found
        for sidecar in sidecars:
            database = Path(str(sidecar)[: -len(SIDECAR_SUFFIX)])
            record = self.read_record(database.stem)
            if record is not None and self.path(database.stem) == database:
                found[database.stem] = record
        return found

    def server_version(self) -> str:
        return sqlite3.sqlite_version

    def close(self) -> None:
        for keeper in self._keepers.values():
            keeper.close()
        self._keepers.clear()

    # -- connections ----------------------------------------------------------

    def engine_options(self, url: URL, options: Mapping[str, Any]) -> dict[str, Any]:
        merged = dict(options)
        connect_args = dict(merged.get("connect_args") or {})
        connect_args.setdefault("timeout", self.lock_timeout)
        if is_memory(url) and url.get_driver_name() == "pysqlite":
            # Starlette's TestClient runs the app in another thread.
            connect_args.setdefault("check_same_thread", False)
        merged["connect_args"] = connect_args
        if is_memory(url) and "poolclass" not in merged and "pool" not in merged:
            from sqlalchemy.pool import AsyncAdaptedQueuePool, QueuePool

            merged["poolclass"] = (
                AsyncAdaptedQueuePool if url.get_driver_name() == "aiosqlite" else QueuePool
            )
        return merged

    def install_connect_events(self, engine: Engine, options: Mapping[str, Any]) -> None:
        if not legacy_transactions(options.get("connect_args") or {}):
            return

        @event.listens_for(engine, "connect")
        def own_transactions(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def begin(connection: Connection) -> None:
            # SQLAlchemy fires "begin" on AUTOCOMMIT connections too; those stay out of
            # any transaction, as they would without the fix.
            if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
                connection.exec_driver_sql("BEGIN")

    # -- after each test -------------------------------------------------------

    def _look(self, connection: Connection) -> tuple[Any, ...]:
        """Data version, then every watched pragma, attached databases and temp tables."""
        return self.driver_execute(connection, STATE_SQL, returns_rows=True)[0]

    def prepare_connection(self, connection: Connection) -> None:
        info = connection.info
        if "alchemy_state" in info:
            return
        engine = connection.engine
        closed_after = closed_after_test(connection)
        fresh = self._fresh_state.get(engine) if closed_after else None
        if fresh is not None:
            # Closed after the test, so its pragmas and temp tables cannot reach another
            # test: what others committed is all there is to watch, and the file's change
            # counter tells it without a statement (aiosqlite runs each statement through
            # its thread: four hand-overs). It starts as every connection of its engine
            # does, which matters only when a leak is put back on it.
            counter = self._change_counter(connection)
            if counter is not None:
                info["alchemy_change_counter"] = counter
                info["alchemy_state"] = fresh
                return
        look = self._look(connection)
        info["alchemy_state"] = look[1:]
        info["alchemy_data_version"] = look[0]
        if closed_after:
            self._fresh_state[engine] = look[1:]

    def _change_counter(self, connection: Connection) -> int | None:
        """The database file's change counter, from its header; None if it cannot tell.

        SQLite adds one to it with every commit in rollback-journal mode. In WAL mode
        (file format version 2) the header changes only at checkpoints.
        """
        if self.memory:
            return None
        try:
            with open(connection.engine.url.database or "", "rb") as file:
                header = file.read(28)
        except OSError:
            return None
        if len(header) < 28 or header[18] != 1:
            return None
        return int.from_bytes(header[24:28], "big")

    def start_marker(self, connection: Connection) -> Any:
        self.prepare_connection(connection)
        return None

    def probe(
        self,
        connection: Connection,
        survivors: Sequence[str],
        active: Sequence[int] = (),
        *,
        inside: bool = False,
    ) -> StateProbe:
        counter = connection.info.get("alchemy_change_counter")
        if counter is not None and self._change_counter(connection) == counter:
            return StateProbe()  # nothing committed; the connection is closed next
        look = self._look(connection)
        before = connection.info.get("alchemy_data_version")
        connection.info["alchemy_data_version"] = look[0]
        baseline = connection.info.get("alchemy_state")
        leftovers: list[str] = []
        if baseline is not None and look[1:-1] != baseline[:-1]:
            leftovers.append("pragmas")
        if baseline is not None and look[-1] != baseline[-1]:
            leftovers.append("temp_tables")
        return StateProbe(
            committed_elsewhere=before is None or before != look[0],
            leftovers=tuple(leftovers),
        )

    def reset(self, connection: Connection, leftovers: Iterable[str]) -> None:
        kinds = set(leftovers)
        baseline = connection.info["alchemy_state"]
        current = self._look(connection)[1:]
        if "pragmas" in kinds:
            attached = str(current[-2] or "").split(",")
            for name in attached:
                if name not in str(baseline[-2] or "").split(","):
                    self.driver_execute(connection, f'DETACH DATABASE "{name}"')
            for pragma, now, then in zip(WATCHED_PRAGMAS, current, baseline, strict=False):
                if now != then:
                    self.driver_execute(connection, f"PRAGMA {pragma} = {int(then)}")
        if "temp_tables" in kinds:
            rows = self.driver_execute(
                connection, "SELECT name FROM sqlite_temp_master WHERE type = 'table'"
            )
            for (name,) in rows:
                self.driver_execute(connection, f'DROP TABLE temp."{name}"')

    sees_own_commits: ClassVar[bool] = False

    def transaction_ended_by_driver(self, connection: Connection) -> bool:
        if not connection.in_transaction():
            return False
        dbapi = connection.connection.dbapi_connection
        # pysqlite's connection, or the one inside aiosqlite's adapter
        for candidate in (dbapi, getattr(dbapi, "_connection", None)):
            state = getattr(candidate, "in_transaction", None)
            if isinstance(state, bool):
                return not state
        return False

    def explain_error(self, context: Any, open_tests: int) -> BaseException | None:
        original = context.original_exception
        if (
            open_tests == 0
            or context.dialect.name != "sqlite"
            or "database is locked" not in str(original)
        ):
            return None
        from sqlalchemy.exc import OperationalError

        text = (
            f"{original} - pytest-alchemy: a test is running inside an open transaction on the "
            "SQLite test database, and once that test has written, its transaction holds "
            "SQLite's single write lock until the test ends; this second connection (the app's "
            "own engine, a thread, another process) cannot write meanwhile. Write through the "
            "test's own session (list the app's session factory in alchemy_app_sessions), or "
            "let the test commit for real with @pytest.mark.alchemy_db(isolation='none'), or "
            "test on PostgreSQL."
        )
        return OperationalError(context.statement, context.parameters, type(original)(text))

    def _empty_tables(self, connection: Connection, tables: Sequence[str]) -> None:
        # Foreign keys are checked at commit, so the order of the deletes does not matter.
        connection.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
        for table in tables:
            connection.exec_driver_sql(f"DELETE FROM {table}")

    def table_names(self, connection: Connection) -> list[str]:
        rows = connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name"
        ).scalars()
        return [f'"{name}"' for name in rows]


def _driver_target(url: URL) -> str:
    """The string sqlite3.connect() receives for a memory URL (uri=True)."""
    parameters = {
        key: value
        for key, value in url.query.items()
        if key not in ("uri", "timeout", "check_same_thread", "isolation_level")
    }
    target = url.database or ""
    if parameters:
        target += "?" + "&".join(f"{key}={parameters[key]}" for key in sorted(parameters))
    return target
