"""What every backend provides, and the safety guard no backend can skip.

A :class:`Backend` knows one kind of database server: how a test database is
named, created, recorded, found again and dropped, how a connection is set up
(lock timeouts), what session state survives a rollback and how to reset it,
and how to tell cheaply that something committed behind a test's back.

The public ``create``/``drop``/``empty`` methods are template methods: each
first asks the :class:`Guard`, then calls the backend's private
implementation. So a backend added later cannot forget the guard.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from ..errors import SafetyError, message
from ..runs import RunIdentity
from ..urls import DerivedName, derive_name

TOOL = "pytest-alchemy"

KIND_RUN = "run"
"""A database for one run: dropped at its end, reaped when the run died."""
KIND_KEPT = "kept"
"""Kept at the end for inspection (keep_db); never reaped, recreated next run."""
KIND_REUSE = "reuse"
"""Kept for the next run (reuse_db); never reaped, reused when its fingerprint matches."""

STATE_BUILDING = "building"
STATE_IN_USE = "in_use"
STATE_CLEAN = "clean"


@dataclass(frozen=True)
class Record:
    """What pytest-alchemy writes next to each database it creates."""

    kind: str
    state: str
    owner: RunIdentity | None
    fingerprint: str | None = None
    schema: str | None = None
    created: float = field(default_factory=time.time)

    def to_json(self) -> str:
        return json.dumps(
            {
                "tool": TOOL,
                "kind": self.kind,
                "state": self.state,
                "owner": self.owner.to_dict() if self.owner else None,
                "fingerprint": self.fingerprint,
                "schema": self.schema,
                "created": self.created,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | None) -> Record | None:
        """The record in ``text``; None when it is not one of ours."""
        if not text:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("tool") != TOOL:
            return None
        return cls(
            kind=str(data.get("kind", KIND_RUN)),
            state=str(data.get("state", STATE_BUILDING)),
            owner=RunIdentity.from_dict(data.get("owner")),
            fingerprint=data.get("fingerprint"),
            schema=data.get("schema"),
            created=float(data.get("created") or 0.0),
        )

    def with_(self, **changes: Any) -> Record:
        return replace(self, **changes)

    def held_by_live_run(self) -> bool:
        return self.owner is not None and not self.owner.is_me() and self.owner.is_alive()


@dataclass(frozen=True)
class Guard:
    """Never create, empty or drop a database that is not a test database.

    ``prefix`` is the test prefix (``test_``); ``protected`` is the database
    named in the user's URL, which is never touched unless its own name already
    starts with ``test``.
    """

    prefix: str
    protected: str | None

    def check(self, action: str, name: str, shown: str | None = None) -> None:
        shown = shown or name
        if not self.prefix:
            raise SafetyError(message(f"refusing to {action} {shown!r}: the test prefix is empty."))
        if not name.startswith(self.prefix):
            raise SafetyError(
                message(
                    f"refusing to {action} the database {shown!r}: its name does not start "
                    f"with the test prefix {self.prefix!r}, so it may hold real data. "
                    "pytest-alchemy only ever creates, empties or drops test databases. "
                    "Point alchemy_url at the server and app database name (the plugin "
                    f"then uses {self.prefix}<name>), or change alchemy_test_prefix."
                )
            )
        if name == self.protected and not name.startswith("test"):
            raise SafetyError(
                message(
                    f"refusing to {action} the database {shown!r}: it is the database named "
                    "in your URL, and its name does not start with 'test'. pytest-alchemy "
                    "never touches the database your URL names unless that name says it is "
                    "a test database."
                )
            )


@dataclass(frozen=True)
class StateProbe:
    """What a backend found on a connection after a test, and what needs undoing."""

    committed_elsewhere: bool = False
    """Something committed since the last check, by a connection other than this one."""
    leftovers: tuple[str, ...] = ()
    """Session state the next test must not see (prepared statements, settings...)."""
    blockers: tuple[str, ...] = ()
    """Other sessions on the test database still inside a transaction, described."""
    blocker_ids: tuple[int, ...] = ()


def closed_after_test(connection: Connection) -> bool:
    """Whether the pool closes ``connection`` when its test returns it (no pool: async
    tests on their own event loop); its session state then goes with it."""
    return isinstance(connection.engine.pool, NullPool)


class Backend(ABC):
    """One kind of database server. Subclasses register in ``_dispatch``."""

    name: ClassVar[str]
    name_limit: ClassVar[int] = 63
    sees_own_commits: ClassVar[bool] = True
    """Whether the probe notices commits made by the probing connection itself."""

    def __init__(self, url: URL, guard: Guard, *, lock_timeout: float) -> None:
        self.url = url
        self.guard = guard
        self.lock_timeout = lock_timeout

    # -- naming -------------------------------------------------------------

    @abstractmethod
    def configured_database(self) -> str | None:
        """The database name the configured URL names (None: none named)."""

    def derive(self, prefix: str, worker: str | None) -> DerivedName:
        return derive_name(self.configured_database(), prefix, worker=worker, limit=self.name_limit)

    @abstractmethod
    def test_url(self, name: str) -> URL:
        """The URL of the test database ``name`` on this server."""

    def guarded_name(self, name: str) -> str:
        """The part of ``name`` the guard checks (a file's base name for SQLite)."""
        return name

    def describe(self, name: str) -> str:
        return name

    # -- provisioning, behind the guard ---------------------------------------

    def create(self, name: str, record: Record) -> None:
        self.guard.check("create", self.guarded_name(name), self.describe(name))
        self._create(name, record)

    def drop(self, name: str) -> None:
        self.guard.check("drop", self.guarded_name(name), self.describe(name))
        self._drop(name)

    def check_emptying(self, name: str) -> None:
        """Raise unless ``name`` may be emptied (truncate, leak clean-up)."""
        self.guard.check("empty tables of", self.guarded_name(name), self.describe(name))

    def empty_tables(self, connection: Connection, database: str, tables: Sequence[str]) -> None:
        """Empty ``tables`` of the test database ``database``, without firing triggers."""
        self.check_emptying(database)
        if tables:
            self._empty_tables(connection, tables)

    def drop_tables(self, connection: Connection, database: str, tables: Sequence[str]) -> None:
        """Drop ``tables`` (created by a test) from the test database ``database``."""
        self.guard.check("drop tables of", self.guarded_name(database), self.describe(database))
        for table in tables:
            connection.exec_driver_sql(f"DROP TABLE {table}{self.drop_table_suffix}")

    drop_table_suffix: ClassVar[str] = ""

    @abstractmethod
    def _empty_tables(self, connection: Connection, tables: Sequence[str]) -> None: ...

    @abstractmethod
    def _create(self, name: str, record: Record) -> None: ...

    @abstractmethod
    def _drop(self, name: str) -> None: ...

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def read_record(self, name: str) -> Record | None: ...

    @abstractmethod
    def write_record(self, name: str, record: Record) -> None: ...

    @abstractmethod
    def records(self) -> Mapping[str, Record]:
        """Every database on this server that carries one of our records."""

    @abstractmethod
    def server_version(self) -> str: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release admin connections and anything else held for provisioning."""

    # -- connections ---------------------------------------------------------

    def engine_options(self, url: URL, options: Mapping[str, Any]) -> dict[str, Any]:
        """Engine keyword arguments this backend needs on top of the user's."""
        return dict(options)

    @abstractmethod
    def install_connect_events(self, engine: Engine, options: Mapping[str, Any]) -> None:
        """Set up every new DBAPI connection: lock timeout, transaction control."""

    def driver_execute(
        self,
        connection: Connection,
        sql: str,
        parameters: Sequence[str] = (),
        *,
        returns_rows: bool = False,
    ) -> list[tuple[Any, ...]]:
        """Run ``sql`` on the driver's connection, outside any transaction; its rows.

        The per-test checks go straight to the driver: no transaction begun and
        rolled back around them, no SQLAlchemy statement machinery, nothing logged
        as the test's SQL. ``parameters`` go with placeholders in the driver's own
        style; values the plugin computed may be inlined. With ``returns_rows`` the
        rows are fetched without asking the cursor for its description first (which
        psycopg builds column by column).
        """
        dbapi_connection = connection.connection.dbapi_connection
        cursor = dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            if parameters:
                cursor.execute(sql, tuple(parameters))
            else:
                cursor.execute(sql)
            if not (returns_rows or cursor.description):
                return []
            return [tuple(row) for row in cursor.fetchall()]
        except Exception as error:
            # The driver's own error, in SQLAlchemy's terms, as if SQLAlchemy had run it.
            driver = connection.dialect.loaded_dbapi
            if not isinstance(error, driver.Error):
                raise
            lost = connection.dialect.is_disconnect(error, dbapi_connection, cursor)
            raise DBAPIError.instance(
                sql,
                None,
                error,
                driver.Error,
                connection_invalidated=lost,
                dialect=connection.dialect,
            ) from error
        finally:
            cursor.close()

    @abstractmethod
    def prepare_connection(self, connection: Connection) -> None:
        """Before a connection's first test: remember its state right after connect."""

    def end_sessions(self, connection: Connection, database: str, ids: Sequence[int]) -> None:
        """End other sessions on the test database that a test left inside a transaction."""
        self.guard.check("end sessions on", self.guarded_name(database), self.describe(database))
        if ids:
            self._end_sessions(connection, ids)

    def _end_sessions(self, connection: Connection, ids: Sequence[int]) -> None:  # noqa: B027
        """Backends that can see other sessions end them here."""

    probes_inside_transaction: ClassVar[bool] = False
    """Whether :meth:`probe` may run inside the test's transaction, before its rollback.

    It saves a round trip. Own uncommitted work is not mistaken for a commit made
    elsewhere, and state a rollback undoes may be reported (then reset needlessly).
    """

    @abstractmethod
    def probe(
        self,
        connection: Connection,
        survivors: Sequence[str],
        active: Sequence[int] = (),
        *,
        inside: bool = False,
    ) -> StateProbe:
        """One cheap look after a test: did anything commit elsewhere, what state remains.

        ``survivors`` are the kinds of session state the strategy could not have
        undone (see :data:`STATE_KINDS`); ``active`` are the server ids of the
        run's own connections still in a test. Runs outside any transaction, or with
        ``inside`` (see :attr:`probes_inside_transaction`) in the test's transaction,
        which the caller rolls back next; the backend may end it with that rollback in
        the same round trip, and the caller's rollback then sends nothing.
        """

    @abstractmethod
    def reset(self, connection: Connection, leftovers: Iterable[str]) -> None:
        """Undo the session state a probe found, keeping driver caches and connect settings."""

    @abstractmethod
    def start_marker(self, connection: Connection) -> Any:
        """The position the first probe compares against."""

    @abstractmethod
    def table_names(self, connection: Connection) -> list[str]:
        """User tables of the test database, for the leak check's baseline."""

    def driver_in_transaction(self, connection: Connection) -> bool:
        """Whether the database has a transaction open on the connection's session.

        False when the test ran no statement on it (drivers begin lazily), or a raw
        ``COMMIT`` ended it; backends that cannot tell say True.
        """
        return True

    def transaction_ended_by_driver(self, connection: Connection) -> bool:
        """Whether SQLAlchemy still holds a transaction the database has already ended.

        A raw ``COMMIT`` does that. Backends whose probe sees such a commit anyway
        (PostgreSQL: its transaction id is committed) need not tell.
        """
        return False

    rolled_back_survivors: ClassVar[tuple[str, ...]] = ()
    """Kinds of session state (:data:`STATE_KINDS`) a rollback leaves behind."""

    def survivors(self, *, committed: bool) -> tuple[str, ...]:
        """The kinds of session state that can outlive a test whose work was rolled back
        or, with ``committed``, committed for real."""
        return STATE_KINDS if committed else self.rolled_back_survivors

    collect_after_cancel: ClassVar[bool] = False
    """Whether a connection invalidated under cancelled tasks stays open (holding its
    locks) until the garbage collector frees the statements they still reference."""

    def explain_error(self, context: Any, open_tests: int) -> BaseException | None:
        """A clearer exception for a driver error seen during the run, or None.

        Called for errors of every engine in the process (the app's own too).
        """
        return None


STATE_KINDS = (
    "advisory_locks",
    "prepared_statements",
    "settings",
    "temp_tables",
    "listen",
    "cursors",
    "pragmas",
)
"""Kinds of session state a test may leave on a pooled connection."""
