"""What every backend checks around a test, and the guard on what it may change.

A :class:`SessionChecks` belongs to one test database. Its methods that change
the database (emptying or dropping tables, ending other sessions) are template
methods that ask the provisioner's :class:`~pytest_alchemy.provision.Guard`
first, so a backend added later cannot forget the guard.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from ..errors import ConfigurationError, message
from ..tables import TableRef

if TYPE_CHECKING:
    from ..leaks import Baseline, RowImages, SequencePositions
    from ..provision import Provisioner
    from ..restore import PutBack
    from .ddl import Recreated, SchemaSnapshot

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
    quiet: bool = False
    """Nothing was committed by anyone since the last check, which the backend can tell
    even where it cannot see this connection's own commits (SQLite's change counter)."""


def closed_after_test(connection: Connection) -> bool:
    """Whether the pool closes ``connection`` when its test returns it (no pool: async
    tests on their own event loop); its session state then goes with it."""
    return isinstance(connection.engine.pool, NullPool)


def _driver_error(
    connection: Connection, sql: str, error: Exception, cursor: Any
) -> Exception | None:
    """The driver's own ``error`` in SQLAlchemy's terms, as if SQLAlchemy had run ``sql``
    (None: not the driver's)."""
    driver = connection.dialect.loaded_dbapi
    if not isinstance(error, driver.Error):
        return None
    lost = connection.dialect.is_disconnect(error, connection.connection.dbapi_connection, cursor)
    return DBAPIError.instance(
        sql,
        None,
        error,
        driver.Error,
        connection_invalidated=lost,
        dialect=connection.dialect,
    )


class SessionChecks(ABC):
    """The per-test checks of one test database. Subclasses are named in the registry."""

    sees_own_commits: ClassVar[bool] = True
    """Whether the probe notices commits made by the probing connection itself."""
    probes_inside_transaction: ClassVar[bool] = False
    """Whether :meth:`probe` may run inside the test's transaction, before its rollback.

    It saves a round trip. Own uncommitted work is not mistaken for a commit made
    elsewhere, and state a rollback undoes may be reported (then reset needlessly).
    """
    rolled_back_survivors: ClassVar[tuple[str, ...]] = ()
    """Kinds of session state (:data:`STATE_KINDS`) a rollback leaves behind."""
    collect_after_cancel: ClassVar[bool] = False
    """Whether a connection invalidated under cancelled tasks stays open (holding its
    locks) until the garbage collector frees the statements they still reference."""
    drop_table_suffix: ClassVar[str] = ""
    images: RowImages
    """How the leak check reads and restores this backend's rows."""

    def __init__(self, provisioner: Provisioner, database: str) -> None:
        self.provisioner = provisioner
        self.database = database

    def survivors(self, *, committed: bool) -> tuple[str, ...]:
        """The kinds of session state that can outlive a test whose work was rolled back
        or, with ``committed``, committed for real."""
        return STATE_KINDS if committed else self.rolled_back_survivors

    # -- changes, behind the guard ----------------------------------------------

    def _check(self, action: str) -> None:
        provisioner = self.provisioner
        provisioner.guard.check(
            action,
            provisioner.guarded_name(self.database),
            lambda: provisioner.describe(self.database),
        )

    def empty_tables(
        self,
        connection: Connection,
        tables: Sequence[TableRef],
        rows: Mapping[TableRef, int] | None = None,
    ) -> bool:
        """Empty ``tables`` of the test database, without firing triggers (``rows``:
        how many each holds, where known, for backends that empty small tables
        another way than big ones). Returns whether other tables may have been
        emptied with them (PostgreSQL's ``TRUNCATE … CASCADE``)."""
        self._check("empty tables of")
        if not tables:
            return False
        return self._empty_tables(connection, tables, rows or {}) is not False

    def drop_tables(self, connection: Connection, tables: Sequence[TableRef]) -> None:
        """Drop ``tables`` (created by a test) from the test database."""
        if not tables:
            return
        self._check("drop tables of")
        for table in tables:
            quoted = table.quoted(connection.dialect)
            connection.exec_driver_sql(f"DROP TABLE {quoted}{self.drop_table_suffix}")

    def put_back(self, connection: Connection, baseline: Baseline, plan: PutBack) -> list[TableRef]:
        """Carry out ``plan`` (the repair :func:`~pytest_alchemy.restore.restore_baseline`
        decided on) on ``connection``, outside any transaction, all or nothing. Returns
        the tables whose seed rows were too many to keep. Backends that can send it as
        one script override this."""
        from ..restore import put_back

        return put_back(connection, self, baseline, plan)

    def end_sessions(self, connection: Connection, ids: Sequence[int]) -> None:
        """End other sessions on the test database that a test left inside a transaction."""
        self._check("end sessions on")
        if ids:
            self._end_sessions(connection, ids)

    def restore_sequences(self, connection: Connection, positions: SequencePositions) -> None:
        """Put every sequence that moved since ``positions`` (from
        :meth:`sequence_positions`) back there, inside the caller's transaction."""
        now = self.sequence_positions(connection)
        moved = {
            name: position
            for name, position in positions.items()
            if name in now and now[name][0] != position[0]
        }
        if moved:
            self._check("restore sequences of")
            self._set_sequences(connection, moved)

    def recreate_tables(
        self, connection: Connection, snapshot: SchemaSnapshot, baseline: Baseline
    ) -> Recreated:
        """Drop every table of the test database but the kept ones (tables a test made
        included) and make them again from ``snapshot`` (:meth:`schema_snapshot`), with
        the rows and sequence positions of ``baseline``; outside any transaction, in one
        of its own where the backend can."""
        self._check("recreate the tables of")
        return self._recreate_tables(connection, snapshot, baseline)

    @abstractmethod
    def _empty_tables(
        self, connection: Connection, tables: Sequence[TableRef], rows: Mapping[TableRef, int]
    ) -> bool | None:
        """Empty ``tables``; False when no other table was emptied with them (None: it
        may have been)."""

    def _recreate_tables(
        self, connection: Connection, snapshot: SchemaSnapshot, baseline: Baseline
    ) -> Recreated:
        """Backends that can take a :meth:`schema_snapshot` rebuild tables from it here."""
        raise self._cannot_recreate()

    def _set_sequences(  # noqa: B027
        self, connection: Connection, positions: SequencePositions
    ) -> None:
        """Backends with sequences set them here (a last value of None: never used)."""

    # -- what putting tables back must know ------------------------------------

    def sequence_positions(self, connection: Connection) -> SequencePositions:
        """Where each sequence of the test database stands (on SQLite, the counters of
        AUTOINCREMENT tables), so that ids start again where they did."""
        return {}

    @contextlib.contextmanager
    def repair_connection(self, connection: Connection) -> Iterator[Connection]:
        """The connection that puts tables back after a test on ``connection``: by
        default that one (see the PostgreSQL backend for why it may be another)."""
        yield connection

    @contextlib.contextmanager
    def constraints_suspended(self, connection: Connection) -> Iterator[None]:
        """Outside any transaction: foreign keys neither checked nor acted upon (no
        cascades) in the block, where the backend can; the block's transaction leaves
        the tables consistent, as they were at the baseline."""
        yield

    @contextlib.contextmanager
    def triggers_suspended(self, connection: Connection) -> Iterator[None]:
        """Inside the caller's transaction: the user's triggers do not fire in the block,
        so emptying tables and putting seed rows back runs none of the app's logic."""
        yield

    def _end_sessions(self, connection: Connection, ids: Sequence[int]) -> None:  # noqa: B027
        """Backends that can see other sessions end them here."""

    def schema_snapshot(self, connection: Connection, keep: Collection[str]) -> SchemaSnapshot:
        """The DDL of every table of the test database but the ``keep`` ones, read from
        the database itself, for :meth:`recreate_tables`; in the caller's transaction,
        which the caller rolls back."""
        raise self._cannot_recreate()

    def _cannot_recreate(self) -> ConfigurationError:
        return ConfigurationError(
            message(
                f"the {self.provisioner.name} backend cannot read its schema to recreate "
                "tables, so the recreate strategy does not work on it. Choose another "
                "isolation for these tests (truncate, savepoint)."
            )
        )

    # -- looking at a connection -------------------------------------------------

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
            converted = _driver_error(connection, sql, error, cursor)
            if converted is None:
                raise
            raise converted from error
        finally:
            cursor.close()

    def driver_statements(self, connection: Connection, statements: Iterable[str]) -> None:
        """Run ``statements`` one after the other on one cursor of the driver's
        connection, inside the transaction the caller began; an error names the
        statement that failed."""
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            for sql in statements:
                try:
                    cursor.execute(sql)
                except Exception as error:
                    converted = _driver_error(connection, sql, error, cursor)
                    if converted is None:
                        raise
                    raise converted from error
        finally:
            cursor.close()

    @abstractmethod
    def prepare_connection(self, connection: Connection) -> None:
        """Before a connection's first test: remember its state right after connect."""

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
        undone (see :meth:`survivors`); ``active`` are the server ids of the run's
        own connections still in a test. Runs outside any transaction, or with
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
    def table_names(self, connection: Connection) -> list[TableRef]:
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

    def explain_error(
        self, context: Any, open_tests: int, active: Collection[int] = ()
    ) -> BaseException | None:
        """A clearer exception for a driver error seen during the run, or None.

        Called for errors of every engine in the process (the app's own too);
        ``active`` are the server ids of the run's connections inside a test.
        """
        return None
