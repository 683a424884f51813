"""SQLite: pragmas, temp tables and the data version, looked at after each test.

* ``PRAGMA data_version`` tells, without a round trip, whether another
  connection committed since the last look; a connection closed after its test
  is checked with the database file's change counter instead.
* Pragmas a test changed and temp tables it left are put back as the
  connection found them, so the next test on a pooled connection starts alike.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from ..tables import TableRef
from . import sqlite_ddl
from .base import SessionChecks, StateProbe, closed_after_test
from .ddl import Recreated, SchemaSnapshot, steps
from .sqlite_images import SQLiteImages

if TYPE_CHECKING:
    from ..leaks import Baseline, SequencePositions
    from ..provision.sqlite import SQLiteProvisioner

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


class SQLiteChecks(SessionChecks):
    rolled_back_survivors: ClassVar[tuple[str, ...]] = ("pragmas", "temp_tables")
    collect_after_cancel: ClassVar[bool] = True

    def __init__(self, provisioner: SQLiteProvisioner, database: str) -> None:
        super().__init__(provisioner, database)
        self.memory = provisioner.memory
        self.sqlite_images = SQLiteImages()
        self.images = self.sqlite_images
        self._fresh_state: weakref.WeakKeyDictionary[Engine, tuple[Any, ...]] = (
            weakref.WeakKeyDictionary()
        )
        """Per engine without pool: the state its connections start in."""

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
        # What was committed so far, on any connection, is no news to the next probe.
        info = connection.info
        if "alchemy_change_counter" in info:
            counter = self._change_counter(connection)
            if counter is not None:
                info["alchemy_change_counter"] = counter
        else:
            version = self.driver_execute(connection, "PRAGMA data_version", returns_rows=True)
            info["alchemy_data_version"] = version[0][0]
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
            return StateProbe(quiet=True)  # nothing committed; the connection is closed next
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

    def explain_error(
        self, context: Any, open_tests: int, active: Collection[int] = ()
    ) -> BaseException | None:
        original = context.original_exception
        if (
            open_tests == 0
            or context.dialect.name != "sqlite"
            or "database is locked" not in str(original)
        ):
            return None
        from sqlalchemy.exc import OperationalError

        connection = context.connection
        if connection is not None and "alchemy_state" in connection.info:
            text = (
                f"{original} - pytest-alchemy: the test's own connection waited longer than "
                f"alchemy_lock_timeout ({self.provisioner.lock_timeout:g} s, its busy timeout) "
                "for SQLite's single write lock, which another connection holds inside a "
                "transaction (the app's own engine, a thread, another process). End that "
                "transaction before the test writes, or raise alchemy_lock_timeout if the wait "
                "is expected."
            )
        else:
            text = (
                f"{original} - pytest-alchemy: a test is running inside an open transaction on "
                "the SQLite test database, and once that test has written, its transaction holds "
                "SQLite's single write lock until the test ends; this second connection (the "
                "app's own engine, a thread, another process) waited its own busy timeout "
                "(sqlite3's timeout, 5 s unless set) and cannot write meanwhile. Write through "
                "the test's own session (list the app's session factory in "
                "alchemy_app_sessions), or let the test commit for real with "
                "@pytest.mark.alchemy_db(isolation='none'), or test on PostgreSQL."
            )
        return OperationalError(context.statement, context.parameters, type(original)(text))

    def _empty_tables(
        self, connection: Connection, tables: Sequence[TableRef], rows: Mapping[TableRef, int]
    ) -> bool:
        # Foreign keys are checked at commit, so the order of the deletes does not matter;
        # with them off (constraints_suspended), no ON DELETE action reaches other tables.
        connection.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
        for table in tables:
            connection.exec_driver_sql(f"DELETE FROM {table.quoted(connection.dialect)}")
        return False

    def sequence_positions(self, connection: Connection) -> SequencePositions:
        counted = connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE '%AUTOINCREMENT%'"
        ).scalars()
        positions: SequencePositions = {str(name): (None, 0) for name in counted}
        if positions:  # then SQLite keeps their counters in sqlite_sequence
            for name, seq in connection.exec_driver_sql("SELECT name, seq FROM sqlite_sequence"):
                if name in positions:
                    positions[str(name)] = (None if seq is None else int(seq), 0)
        return positions

    def _set_sequences(self, connection: Connection, positions: SequencePositions) -> None:
        names = [{"name": name} for name in positions]
        connection.execute(text("DELETE FROM sqlite_sequence WHERE name = :name"), names)
        used = [
            {"name": name, "seq": last} for name, (last, _) in positions.items() if last is not None
        ]
        if used:
            connection.execute(
                text("INSERT INTO sqlite_sequence (name, seq) VALUES (:name, :seq)"), used
            )

    @contextlib.contextmanager
    def constraints_suspended(self, connection: Connection) -> Iterator[None]:
        # Outside a transaction only: with foreign keys off, deleting a parent's rows
        # neither cascades to its children nor fails.
        enforced = self.driver_execute(connection, "PRAGMA foreign_keys", returns_rows=True)
        if not enforced or not enforced[0][0]:
            yield
            return
        self.driver_execute(connection, "PRAGMA foreign_keys = OFF")
        try:
            yield
        finally:
            self.driver_execute(connection, "PRAGMA foreign_keys = ON")

    @contextlib.contextmanager
    def triggers_suspended(self, connection: Connection) -> Iterator[None]:
        # SQLite cannot switch triggers off: they are dropped and made again, inside
        # the caller's transaction (DDL is transactional there).
        triggers = connection.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND sql IS NOT NULL"
        ).all()
        preparer = connection.dialect.identifier_preparer
        for name, _ in triggers:
            connection.exec_driver_sql(f"DROP TRIGGER {preparer.quote(str(name))}")
        yield
        for _, sql in triggers:
            connection.exec_driver_sql(str(sql))

    def table_names(self, connection: Connection) -> list[TableRef]:
        return self.sqlite_images.tables(connection)

    def schema_snapshot(self, connection: Connection, keep: Collection[str]) -> SchemaSnapshot:
        return sqlite_ddl.snapshot(connection, keep)

    def _recreate_tables(
        self, connection: Connection, snapshot: SchemaSnapshot, baseline: Baseline
    ) -> Recreated:
        recreated = Recreated(tables=list(snapshot.tables))
        # Foreign keys off (outside a transaction only), so that dropping a table deletes
        # no row of it first; deferred as well, should they stay on.
        with self.constraints_suspended(connection), connection.begin():
            connection.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
            drops = sqlite_ddl.drops(connection, snapshot, recreated)
            rows = sqlite_ddl.inserts(connection, snapshot, baseline, recreated)
            self.driver_statements(
                connection, [*drops, *steps(snapshot.build, ()), *rows, *steps(snapshot.finish, ())]
            )
            positions = sqlite_ddl.recreated_positions(baseline.sequences, snapshot.keep)
            self.restore_sequences(connection, positions)
        return recreated
