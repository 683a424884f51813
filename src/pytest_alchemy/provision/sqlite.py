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

What is checked on a connection after each test is in ``checks/sqlite.py``.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine

from ..errors import ProvisionError, message
from ..files import write_atomically
from .base import Provisioner, Record

SIDECAR_SUFFIX = ".alchemy.json"
COMPANION_SUFFIXES = ("", "-journal", "-wal", "-shm", SIDECAR_SUFFIX)
MEMDB_MIN_VERSION = (3, 36, 0)
TRUE = frozenset({"1", "true", "yes", "on"})


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


class SQLiteProvisioner(Provisioner):
    name: ClassVar[str] = "sqlite"
    name_limit: ClassVar[int] = 200

    def __init__(
        self, url: URL, prefix: str, *, lock_timeout: float, connect_timeout: float = 10.0
    ) -> None:
        self.memory = is_memory(url)
        super().__init__(url, prefix, lock_timeout=lock_timeout, connect_timeout=connect_timeout)
        self._keepers: dict[str, sqlite3.Connection] = {}

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

    def _clone(self, template: str, name: str, record: Record, *, small: bool = False) -> None:
        """A new database ``name`` with the pages of ``template`` (SQLite's backup API,
        which copies a consistent state even while others read it)."""
        self._create(name, record)
        source = self._open(template)
        target = self._open(name)
        try:
            source.backup(target)
        except sqlite3.Error as error:
            raise ProvisionError(
                message(f"cannot copy the SQLite test database {self.describe(template)}: {error}.")
            ) from None
        finally:
            if template not in self._keepers:
                source.close()
            if name not in self._keepers:
                target.close()

    def template_problem(self) -> str | None:
        if self.memory:
            return "an in-memory SQLite database lives only as long as its run"
        return None

    def _open(self, name: str) -> sqlite3.Connection:
        keeper = self._keepers.get(name)
        if keeper is not None:
            return keeper
        return sqlite3.connect(str(self.path(name)), timeout=self.lock_timeout)

    @contextmanager
    def _exclusive(self, key: str, timeout: float | None) -> Iterator[None]:
        """An advisory lock on a file beside the databases; the system releases it when
        the process holding it ends. An in-memory database belongs to one process."""
        if self.memory:
            yield
            return
        try:
            import fcntl
        except ImportError:  # pragma: no cover - systems without POSIX file locks
            raise ProvisionError(
                message(f"cannot hold the lock {key!r}: this system has no POSIX file locks.")
            ) from None
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        folder = Path(self.url.database or "").parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            file = open(folder / f".alchemy-{digest}.lock", "a+b")  # noqa: SIM115 - closed below
        except OSError as error:
            raise ProvisionError(
                message(
                    f"cannot create the SQLite test databases in {folder}: {error}. The "
                    "directory must exist or be creatable, and be writable. Point alchemy_url "
                    "at a writable place (for example sqlite:///tmp/app.db)."
                )
            ) from None
        deadline = time.monotonic() + (timeout or 0.0)
        with file:
            while True:
                try:
                    fcntl.flock(file, fcntl.LOCK_EX | (0 if timeout is None else fcntl.LOCK_NB))
                    break
                except BlockingIOError:
                    if timeout is None or time.monotonic() > deadline:
                        raise self._locked_out(key, timeout or 0.0) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(file, fcntl.LOCK_UN)

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
        try:
            write_atomically(sidecar, record.to_json())
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
        @event.listens_for(engine, "connect")
        def no_sync(dbapi_connection: Any, _record: Any) -> None:
            # A test database is made again after a crash of the machine, so its commits
            # need not wait for the disk (a file sync per commit, milliseconds each): the
            # file is as safe from a crash of pytest itself as before.
            # Likewise, its rollback journal is kept between transactions (only its header
            # is cleared), not made and deleted again with each one; the file stays as
            # safe from a crash of pytest. A journal mode the database or the app chose
            # (WAL, in memory) is left alone.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA synchronous = OFF")
            cursor.execute("PRAGMA journal_mode")
            if str(cursor.fetchone()[0]).lower() == "delete":
                cursor.execute("PRAGMA journal_mode = PERSIST")
            cursor.close()

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
