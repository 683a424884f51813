"""PostgreSQL: what one query after each test tells, and how session state is reset.

After a test, one query tells whether any transaction committed on the server
since the last check (committed transaction ids, ``pg_xact_status``), which
session state survived the rollback, and whether another session sits inside a
transaction on the test database; it releases the session's advisory locks in
passing. The reset then deallocates only statements prepared with SQL
``PREPARE``, never the driver's own, so asyncpg's and psycopg's statement
caches stay valid.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from ..provision.connector import Connector
from ..provision.postgresql import (
    LOCK_NOT_AVAILABLE,
    SESSION_COLUMNS,
    _code,
    _literal,
    _sqlstate,
    describe_session,
    quote,
)
from ..tables import TableRef
from . import postgresql_ddl
from .base import SessionChecks, StateProbe, closed_after_test
from .ddl import Recreated, SchemaSnapshot
from .postgresql_images import TABLES, PostgreSQLImages

if TYPE_CHECKING:
    from ..leaks import Baseline, SequencePositions
    from ..provision.postgresql import PostgreSQLProvisioner
    from ..restore import PutBack

DELETE_LIMIT = 1000
"""Tables with at most this many rows are emptied with DELETE where no trigger fires."""
XID_WINDOW = 5000
"""More transactions than this since the last check: assume something committed."""

UNDEFINED_STATEMENT = "26000"
PSYCOPG_3 = ("psycopg", "psycopg_async")
TRANSACTION_OPEN = 2
"""psycopg's and psycopg2's ``transaction_status`` inside a usable transaction."""

STATE_COUNTED = ("prepared_statements", "temp_tables", "listen", "cursors")
RELEASE_ADVISORY_LOCKS = "(SELECT 0 FROM pg_advisory_unlock_all())"
"""Releases the session's advisory locks in passing: cheaper than finding them in
``pg_locks``, which copies the server's whole lock table."""
PROBE_PREFIX = "alchemy_probe_"
"""Names of the plugin's own prepared probe statements (``PREPARE``), never the test's."""
OWN_STATEMENT = f"left(name, {len(PROBE_PREFIX)}) <> '{PROBE_PREFIX}'"
PREPARED_STATEMENTS = (
    f"(SELECT count(*) FROM pg_prepared_statements WHERE from_sql AND {OWN_STATEMENT})"
)
TEMP_TABLES = (
    "(SELECT count(*) FROM pg_class WHERE relpersistence = 't' "
    "AND relnamespace = pg_my_temp_schema())"
)
LISTENING = "(SELECT count(*) FROM pg_listening_channels())"
CURSORS = "(SELECT count(*) FROM pg_cursors WHERE is_holdable AND name <> '')"
SETTINGS_DIGEST = (
    "(SELECT md5(coalesce(string_agg(name || '=' || setting, ',' ORDER BY name), '')) "
    "FROM pg_settings WHERE source = 'session' AND left(name, 12) <> 'transaction_')"
)
"""Settings made with SET in the session (a transaction's own characteristics excluded)."""


BLOCKERS = (
    f"(SELECT array_agg(ARRAY[{SESSION_COLUMNS}] ORDER BY xact_start) "
    "FROM pg_stat_get_activity(NULL) "
    "WHERE datid = {database} "
    "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
    "AND xact_start IS NOT NULL "
    "AND pid <> ALL(string_to_array({ours}::text, ',')::int[]))"
)
"""Other sessions on the test database inside a transaction (not the run's own tests)."""

OTHERS_IN_TRANSACTION = (
    "(SELECT count(*) FROM pg_stat_get_backend_idset() AS b(id) "
    "WHERE pg_stat_get_backend_dbid(b.id) = {database} "
    "AND pg_stat_get_backend_xact_start(b.id) IS NOT NULL "
    "AND pg_stat_get_backend_pid(b.id) <> pg_backend_pid() "
    "AND pg_stat_get_backend_pid(b.id) <> ALL(string_to_array({ours}::text, ',')::int[]))"
)
"""How many sessions ``BLOCKERS`` would describe, or a few more (autovacuum workers):
counting them skips building the whole activity table when there are none."""

SEQUENCES = (
    "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename), last_value, "
    "start_value FROM pg_sequences "
    "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
)
USER_TRIGGERS = (
    "SELECT CAST(t.tgrelid AS regclass)::text, quote_ident(t.tgname) FROM pg_trigger AS t "
    "JOIN pg_class AS c ON c.oid = t.tgrelid JOIN pg_namespace AS n ON n.oid = c.relnamespace "
    "WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' "
    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
)
"""The user's enabled triggers: which table, which trigger."""

OTHERS_CONNECTED = "pg_stat_get_db_numbackends({database}) > 1"
"""Whether any other session is connected to the test database at all: cheaper than
counting those inside a transaction, and usually false (the test's connection alone)."""


XMAX = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
"""The next transaction id to be assigned: where the next probe starts."""
START = XMAX + ", (SELECT oid FROM pg_database WHERE datname = current_database())"
"""Where the first probe starts, and the test database's oid, which later probes take
as a parameter instead of looking it up each time."""

PREPARE = (
    "SELECT pg_backend_pid(), "
    + SETTINGS_DIGEST
    + ", (SELECT array_agg(name || '=' || setting ORDER BY name) FROM pg_settings "
    "WHERE source = 'session' AND left(name, 12) <> 'transaction_')"
)
"""A new connection's server id, and its session settings right after connect events."""


def _driver_pid(driver_connection: Any) -> int | None:
    """The server process of a psycopg, psycopg2 or asyncpg connection, if it says."""
    found = (
        getattr(getattr(driver_connection, "info", None), "backend_pid", None),  # psycopg
        getattr(driver_connection, "get_backend_pid", None),  # psycopg2
        getattr(driver_connection, "get_server_pid", None),  # asyncpg
    )
    values = (value() if callable(value) else value for value in found)
    return next((value for value in values if isinstance(value, int)), None)


def _check(wanted: bool, sql: str) -> str:
    return sql if wanted else "0"


class PostgreSQLChecks(SessionChecks):
    rolled_back_survivors: ClassVar[tuple[str, ...]] = ("advisory_locks", "prepared_statements")

    def __init__(self, provisioner: PostgreSQLProvisioner, database: str) -> None:
        super().__init__(provisioner, database)
        self.postgresql = provisioner
        self._xid_position: int | None = None
        self._database_oid = 0
        self._probes: dict[frozenset[str], tuple[str, str]] = {}
        """The probe's text and prepared-statement name, per set of state kinds checked."""
        self._suspect_from: int | None = None
        """Where the last probe that saw commits started: the leak check looks at rows
        written by transactions committed from there on."""
        self._superuser: bool | None = None
        self._replica = False
        """Inside triggers_suspended with the replica role: no foreign key acts."""
        self.images: PostgreSQLImages = PostgreSQLImages(
            lambda: self._suspect_from,
            XID_WINDOW,
            self._run_look,
        )

    def _run_look(
        self, connection: Connection, sql: str, parameters: Sequence[str]
    ) -> list[tuple[Any, ...]]:
        """The leak check's look: prepared once per connection (named by its text)."""
        name = PROBE_PREFIX + "look_" + hashlib.sha1(sql.encode()).hexdigest()[:16]
        return self._run_prepared(connection, sql, name, parameters)

    def driver_execute(
        self,
        connection: Connection,
        sql: str,
        parameters: Sequence[str] = (),
        *,
        returns_rows: bool = False,
        autocommit: bool = True,
    ) -> list[tuple[Any, ...]]:
        """Run ``sql`` on the driver's connection, by default in autocommit mode: one
        round trip.

        Switching psycopg's or the asyncpg adapter's ``autocommit`` sends nothing
        to the server, so no BEGIN and ROLLBACK surround the statement. psycopg
        neither counts nor prepares the plugin's statements: a statement it
        prepared would make it deallocate all prepared statements of the session,
        the plugin's probe among them, at the next rollback.
        """
        dbapi = connection.connection.dbapi_connection
        driver = connection.connection.driver_connection
        threshold = getattr(driver, "prepare_threshold", None)
        if threshold is not None:
            driver.prepare_threshold = None  # type: ignore[union-attr]
        switch = autocommit and not dbapi.autocommit  # type: ignore[union-attr]
        if switch:
            dbapi.autocommit = True  # type: ignore[union-attr]
        try:
            return super().driver_execute(connection, sql, parameters, returns_rows=returns_rows)
        finally:
            if switch:
                dbapi.autocommit = False  # type: ignore[union-attr]
            if threshold is not None:
                driver.prepare_threshold = threshold  # type: ignore[union-attr]

    def prepare_connection(self, connection: Connection) -> None:
        info = connection.info
        if "alchemy_pid" in info:
            return
        if closed_after_test(connection):
            # Closed after the test: its session settings cannot reach another test, and
            # the driver knows the server process without a round trip.
            pid = _driver_pid(connection.connection.driver_connection)
            if pid is not None:
                info["alchemy_pid"] = pid
                return
        pid, digest, settings = self.driver_execute(connection, PREPARE, returns_rows=True)[0]
        info["alchemy_pid"] = int(pid)
        info["alchemy_state"] = (
            digest,
            [tuple(entry.split("=", 1)) for entry in settings or ()],
        )

    def start_marker(self, connection: Connection) -> Any:
        self.prepare_connection(connection)
        position, oid = self.driver_execute(connection, START, returns_rows=True)[0]
        self._xid_position = int(position)
        self._database_oid = int(oid)
        return self._xid_position

    probes_inside_transaction: ClassVar[bool] = True

    def driver_in_transaction(self, connection: Connection) -> bool:
        driver_connection = connection.connection.driver_connection
        in_transaction = getattr(driver_connection, "is_in_transaction", None)  # asyncpg
        if callable(in_transaction):
            return bool(in_transaction())
        status = getattr(getattr(driver_connection, "info", None), "transaction_status", None)
        # psycopg and psycopg2 number the states alike: 0 idle, 2 in a transaction.
        return status is None or int(status) == TRANSACTION_OPEN

    def probe(
        self,
        connection: Connection,
        survivors: Sequence[str],
        active: Sequence[int] = (),
        *,
        inside: bool = False,
    ) -> StateProbe:
        low = self._xid_position
        if low is None:
            self.start_marker(connection)
            return StateProbe(committed_elsewhere=True)
        # A connection closed after its test takes its session state along; only its
        # temp tables matter, which the leak check would take for the test's, and not
        # even those before its rollback.
        wanted = frozenset(survivors)
        monitor = None
        if closed_after_test(connection):
            wanted = frozenset() if inside else wanted & {"temp_tables"}
            # Its new server process would parse and plan the check with cold catalog
            # caches (milliseconds): what is left to check is server-wide, so the run's
            # own long-lived connection checks it, told the test connection's id.
            if not wanted:
                monitor = self.postgresql.monitor()
                own = connection.info.get("alchemy_pid")
                if own is not None:
                    active = (*active, own)
        parameters = (
            str(int(low)),
            str(int(low) + XID_WINDOW),
            ",".join(map(str, active)),
            str(self._database_oid),
        )
        row = None
        # Without a sync driver for it, or when it fails, the test's connection checks.
        held = monitor.hold() if monitor is not None else None
        if monitor is not None and held is not None:
            try:
                row = self._run_probe(held, wanted, parameters, inside=False)
            except DBAPIError:
                monitor.release()
        if row is None:
            row = self._run_probe(connection, wanted, parameters, inside=inside)
        high, committed, pending = int(row[0]), int(row[1]), row[2]
        counts = dict(zip(STATE_COUNTED, row[4:8], strict=True))
        leftovers = [kind for kind in STATE_COUNTED if counts[kind]]
        baseline = connection.info.get("alchemy_state")
        if "settings" in wanted and baseline is not None and baseline[0] != row[8]:
            leftovers.append("settings")
        self._xid_position = high if pending is None else int(pending)
        blockers = row[9] or []
        committed_elsewhere = bool(committed) or high - low > XID_WINDOW
        self._suspect_from = int(low) if committed_elsewhere else None
        return StateProbe(
            committed_elsewhere=committed_elsewhere,
            leftovers=tuple(leftovers),
            blockers=tuple(describe_session(entry) for entry in blockers),
            blocker_ids=tuple(int(entry[0]) for entry in blockers),
        )

    def _probe_text(self, wanted: frozenset[str]) -> tuple[str, str]:
        """The probe for these state kinds, and the name it is prepared under."""
        found = self._probes.get(wanted)
        if found is not None:
            return found
        checks = [
            _check("advisory_locks" in wanted, RELEASE_ADVISORY_LOCKS),
            _check("prepared_statements" in wanted, PREPARED_STATEMENTS),
            _check("temp_tables" in wanted, TEMP_TABLES),
            _check("listen" in wanted, LISTENING),
            _check("cursors" in wanted, CURSORS),
            SETTINGS_DIGEST if "settings" in wanted else "''",
        ]
        database = "$4::text::oid"
        sql = (
            f"WITH r AS ({XMAX} AS hi), "
            "x AS (SELECT g AS xid, pg_xact_status(g::text::xid8) AS status FROM r, "
            "generate_series($1::text::bigint, LEAST(r.hi - 1, $2::text::bigint)) AS g) "
            "SELECT r.hi, "
            "(SELECT count(*) FROM x WHERE status = 'committed'), "
            "(SELECT min(xid) FROM x WHERE status = 'in progress'), "
            + ", ".join(checks)
            + f", CASE WHEN {OTHERS_CONNECTED.format(database=database)} "
            f"THEN CASE WHEN {OTHERS_IN_TRANSACTION.format(database=database, ours='$3')} > 0 "
            f"THEN {BLOCKERS.format(database=database, ours='$3')} END END FROM r"
        )
        found = (sql, PROBE_PREFIX + hashlib.sha1(sql.encode()).hexdigest()[:16])
        self._probes[wanted] = found
        return found

    def _run_probe(
        self,
        connection: Connection,
        wanted: frozenset[str],
        parameters: Sequence[str],
        *,
        inside: bool,
    ) -> tuple[Any, ...]:
        """Run the probe, planned once per connection rather than once per test."""
        sql, name = self._probe_text(wanted)
        return self._run_prepared(connection, sql, name, parameters, inside=inside)[0]

    def _run_prepared(
        self,
        connection: Connection,
        sql: str,
        name: str,
        parameters: Sequence[str],
        *,
        inside: bool = False,
    ) -> list[tuple[Any, ...]]:
        """Run one of the plugin's statements, planned once per connection.

        Parsing and planning a check costs the server more than running it. asyncpg
        prepares every statement and keeps it, so it gets the statement with
        parameters. psycopg forgets what it prepared at each rollback, so the
        statement is a ``PREPARE``d one of the session instead, which outlives
        rollbacks; a test that deallocated it (``DEALLOCATE ALL``, ``DISCARD ALL``)
        gets it prepared again. ``parameters`` are text, ``$1``... in ``sql``.
        """
        run = functools.partial(self.driver_execute, connection, autocommit=not inside)
        if connection.dialect.paramstyle == "numeric_dollar":
            return run(sql, parameters, returns_rows=True)
        prepared: set[str] = connection.info.setdefault("alchemy_prepared", set())
        # Digits and commas only: the values are the plugin's own integers.
        values = ", ".join(f"'{value}'" for value in parameters)
        types = ", ".join("text" for _ in parameters)
        # Without parameters, no parentheses: PostgreSQL takes no empty list.
        values, types = (f"({values})", f"({types})") if parameters else ("", "")
        retry = not inside
        # psycopg takes the transaction status from the server after each statement,
        # so the rollback that follows a probe inside the test's transaction can
        # travel with it: the caller's rollback then finds the driver idle and sends
        # nothing. If the probe fails, the rest of the string is skipped and the
        # transaction is left for the caller to roll back.
        ending = "; ROLLBACK" if inside and connection.dialect.driver in PSYCOPG_3 else ""
        while True:
            if name not in prepared:
                run(f"PREPARE {name}{types} AS {sql}")
                prepared.add(name)
            try:
                return run(f"EXECUTE {name}{values}{ending}", returns_rows=True)
            except DBAPIError as error:
                if _sqlstate(error) != UNDEFINED_STATEMENT:
                    raise
                prepared.discard(name)
                if not retry:
                    raise
                retry = False

    def reset(self, connection: Connection, leftovers: Iterable[str]) -> None:
        kinds = set(leftovers)
        statements = []
        if "prepared_statements" in kinds:
            names = self.driver_execute(
                connection,
                f"SELECT name FROM pg_prepared_statements WHERE from_sql AND {OWN_STATEMENT}",
            )
            statements += [f"DEALLOCATE {quote(connection, name)}" for (name,) in names]
        if "cursors" in kinds:
            statements.append("CLOSE ALL")
        if "temp_tables" in kinds:
            statements.append("DISCARD TEMP")
        if "listen" in kinds:
            statements.append("UNLISTEN *")
        if "settings" in kinds:
            statements.append("RESET ALL")
            baseline = connection.info.get("alchemy_state")
            for name, value in baseline[1] if baseline else ():
                statements.append(
                    f"SELECT set_config({_literal(connection, name)}, "
                    f"{_literal(connection, value)}, false)"
                )
        for statement in statements:
            self.driver_execute(connection, statement)

    drop_table_suffix: ClassVar[str] = " CASCADE"

    def _end_sessions(self, connection: Connection, ids: Sequence[int]) -> None:
        listed = ", ".join(str(int(pid)) for pid in ids)
        self.driver_execute(
            connection,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = current_database() AND pid IN ({listed})",
        )

    def _empty_tables(
        self, connection: Connection, tables: Sequence[TableRef], rows: Mapping[TableRef, int]
    ) -> bool:
        # TRUNCATE makes new files for each table and its indexes: milliseconds per
        # table, where a DELETE of a few rows takes microseconds. With no trigger
        # firing (the replica role of triggers_suspended), foreign keys included, the
        # small tables are deleted from in any order; the caller puts back seed rows
        # and sequences.
        small = [
            table
            for table in tables
            if self._replica and rows.get(table, DELETE_LIMIT + 1) <= DELETE_LIMIT
        ]
        for table in small:
            connection.exec_driver_sql(f"DELETE FROM {table.quoted(connection.dialect)}")
        big = [table for table in tables if table not in small]
        if big:
            # TRUNCATE fires no row triggers; CASCADE empties referencing tables too,
            # which the caller compares and restores, sequences included.
            listed = ", ".join(table.quoted(connection.dialect) for table in big)
            connection.exec_driver_sql(f"TRUNCATE {listed} RESTART IDENTITY CASCADE")
        return bool(big)

    def sequence_positions(self, connection: Connection) -> SequencePositions:
        rows = connection.exec_driver_sql(SEQUENCES).all()
        return {
            str(name): (None if last is None else int(last), int(start))
            for name, last, start in rows
        }

    def _set_sequences(self, connection: Connection, positions: SequencePositions) -> None:
        values = ", ".join(
            f"({_literal(connection, name)}, {int(start if last is None else last)}, "
            f"{'false' if last is None else 'true'})"
            for name, (last, start) in positions.items()
        )
        connection.exec_driver_sql(
            f"SELECT setval(CAST(s AS regclass), v, c) FROM (VALUES {values}) AS t(s, v, c)"
        )

    def put_back(self, connection: Connection, baseline: Baseline, plan: PutBack) -> list[TableRef]:
        script = self._put_back_script(connection, baseline, plan)
        if script is None:
            return super().put_back(connection, baseline, plan)
        if connection.in_transaction():
            connection.rollback()  # where reading a table's columns for the script began one
        self._check("empty tables of")
        if plan.created:
            self._check("drop tables of")
        if baseline.sequences:
            self._check("restore sequences of")
        self._run_script(connection, script)
        return []

    def _put_back_script(
        self, connection: Connection, baseline: Baseline, plan: PutBack
    ) -> list[str] | None:
        """The repair as one script (one round trip, one transaction), or None where it
        must look between its steps or cannot be sent as one: a table too big to delete
        from (its ``TRUNCATE … CASCADE`` may empty others), seed rows too many to keep,
        triggers switched off table by table (not a superuser, or not known yet), or a
        driver that sends one statement at a time."""
        driver = connection.dialect.driver
        if not self._superuser or connection.in_transaction():
            return None
        if driver != "asyncpg" and driver not in (*PSYCOPG_3, "psycopg2"):
            return None
        if any(plan.sizes.get(name, DELETE_LIMIT + 1) > DELETE_LIMIT for name in plan.emptied):
            return None
        wanted = set(plan.emptied) & set(plan.held)
        refill = [name for name in baseline.order if name in wanted and baseline.tables[name].count]
        if any(baseline.tables[name].images is None for name in refill):
            return None
        dialect = connection.dialect
        # No trigger fires, nor the foreign keys' own, until the script's end.
        statements = ["SET LOCAL session_replication_role = replica"]
        statements += [f"DROP TABLE {name.quoted(dialect)} CASCADE" for name in plan.created]
        statements += [f"DELETE FROM {name.quoted(dialect)}" for name in plan.emptied]
        statements += [
            self.images.restore_sql(connection, name, baseline.tables[name].images or [])
            for name in refill
        ]
        if baseline.sequences:
            statements.append(_sequences_put_back(baseline.sequences))
        return statements

    @contextlib.contextmanager
    def repair_connection(self, connection: Connection) -> Iterator[Connection]:
        # Suspending triggers (session_replication_role) empties the server process's
        # cache of planned statements, so the leak check's look, prepared once per
        # connection, would be planned again after every test: the repair runs on
        # another connection of the pool, whose cache holds nothing worth keeping.
        if closed_after_test(connection) or connection.in_transaction():
            yield connection
            return
        with connection.engine.connect() as other:
            try:
                self.prepare_connection(other)
                if other.in_transaction():
                    other.rollback()
                yield other
            except DBAPIError:
                other.invalidate()
                raise

    @contextlib.contextmanager
    def triggers_suspended(self, connection: Connection) -> Iterator[None]:
        if self._superuser is None:
            setting = connection.exec_driver_sql("SELECT current_setting('is_superuser')")
            self._superuser = setting.scalar() == "on"
        if self._superuser:
            # Until the end of the caller's transaction: no trigger fires, nor the
            # foreign keys' own.
            connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
            self._replica = True
            try:
                yield
            finally:
                self._replica = False
            return
        # The owner of a table may switch its triggers off, inside the transaction.
        triggers = connection.exec_driver_sql(USER_TRIGGERS).all()
        for table, trigger in triggers:
            connection.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
        yield
        for table, trigger in triggers:
            connection.exec_driver_sql(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}")

    def schema_snapshot(self, connection: Connection, keep: Collection[str]) -> SchemaSnapshot:
        return postgresql_ddl.snapshot(connection, keep)

    def _recreate_tables(
        self, connection: Connection, snapshot: SchemaSnapshot, baseline: Baseline
    ) -> Recreated:
        recreated = Recreated(tables=list(snapshot.tables))
        # What there is now, in one statement planned once per connection.
        current = self._run_look(connection, postgresql_ddl.CURRENT, ())
        statements = postgresql_ddl.script(current, snapshot, baseline, recreated)
        self._run_script(connection, statements)
        return recreated

    def _run_script(self, connection: Connection, statements: Sequence[str]) -> None:
        """Run ``statements`` as one transaction, outside any other.

        With psycopg, psycopg2 and asyncpg they go as one query of several statements
        in one round trip, which the server runs as one transaction (all or nothing).
        Another driver, or a failed attempt, runs them one by one inside a transaction
        of SQLAlchemy's: a failure then names its statement.
        """
        driver = connection.dialect.driver
        if driver == "asyncpg" or driver in (*PSYCOPG_3, "psycopg2"):
            try:
                self._send_script(connection, ";\n".join(statements))
                return
            except DBAPIError as error:
                if error.connection_invalidated:
                    raise
            except Exception:  # asyncpg's own: told in SQLAlchemy's terms below
                pass
        with connection.begin():
            self.driver_statements(connection, statements)

    def _send_script(self, connection: Connection, script: str) -> None:
        if connection.dialect.driver != "asyncpg":
            self.driver_execute(connection, script)  # in autocommit mode: no BEGIN sent
            return
        from sqlalchemy.util import await_only

        # The adapter prepares every statement, which takes one statement only.
        driver_connection: Any = connection.connection.driver_connection
        await_only(driver_connection.execute(script))

    def table_names(self, connection: Connection) -> list[TableRef]:
        rows = connection.exec_driver_sql(TABLES).all()
        return [
            TableRef(None if schema is None else str(schema), str(name)) for schema, name in rows
        ]

    def explain_error(
        self, context: Any, open_tests: int, active: Collection[int] = ()
    ) -> BaseException | None:
        original = context.original_exception
        if _code(original) != LOCK_NOT_AVAILABLE or context.engine is None:
            return None
        waiting = _waiting_pid(context.connection)
        postgresql = self.postgresql
        connector = Connector(
            context.engine.url, connect_args=lambda chosen: postgresql.connect_args(chosen, {})
        )
        try:
            rows = connector.run(lambda c: self.lock_holders(c, waiting))
        except Exception as error:  # the explanation must never hide the original error
            holders = f"(could not list them: {type(error).__name__})"
            rows = []
        else:
            holders = "; ".join(_describe_holder(row, active) for row in rows)
        finally:
            connector.close()
        own = any(int(row[0]) in active for row in rows)
        if waiting is None:
            waiter = "The statement"
        elif waiting in active:
            waiter = f"The test's own connection (pid {waiting})"
        else:
            waiter = f"A session the plugin does not manage (pid {waiting})"
        if own and waiting not in active:
            advice = (
                "The test's own transaction holds the lock, and code it called waits for it on "
                "a connection of its own, which cannot succeed before the test ends: let that "
                "code use the test's session (list its session factory or engine in "
                "alchemy_app_sessions), or let the test commit for real with "
                "@pytest.mark.alchemy_db(isolation='none')."
            )
        else:
            advice = (
                "Usually a connection or session the test opened elsewhere is still inside a "
                "transaction; close it, or raise alchemy_lock_timeout if the wait is expected."
            )
        text = (
            f"{original} - pytest-alchemy: {waiter} waited longer than alchemy_lock_timeout "
            f"({postgresql.lock_timeout:g} s) for a lock, running {context.statement!r}. "
            "Sessions holding locks on this database: "
            f"{holders or 'none left (the holder has finished since)'}. {advice}"
        )
        explained: BaseException = type(context.sqlalchemy_exception)(
            context.statement, context.parameters, _with_text(original, text)
        )
        return explained

    def lock_holders(self, connection: Connection, waiting: int | None = None) -> list[Any]:
        """Sessions on the database inside a transaction, but ``waiting`` and this one."""
        return list(
            connection.execute(
                text(
                    f"SELECT {SESSION_COLUMNS} FROM pg_stat_activity "
                    "WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND pid <> coalesce(:waiting, -1) "
                    "AND xact_start IS NOT NULL AND backend_type = 'client backend' "
                    "ORDER BY xact_start"
                ),
                {"waiting": waiting},
            ).all()
        )


def _waiting_pid(connection: Connection | None) -> int | None:
    """The server process of the connection whose statement timed out."""
    if connection is None:
        return None
    known = connection.info.get("alchemy_pid")
    if isinstance(known, int):
        return known
    try:
        return _driver_pid(connection.connection.driver_connection)
    except Exception:  # an invalidated connection: the message goes without it
        return None


def _describe_holder(row: Sequence[Any], active: Collection[int]) -> str:
    described = describe_session(row)
    if int(row[0]) in active:
        return f"{described} (the test's own connection)"
    return described


class _Explained(Exception):
    """A driver error whose text was made clearer; keeps the original's code."""

    def __init__(self, text: str, original: BaseException) -> None:
        super().__init__(text)
        self.sqlstate = _code(original)
        self.pgcode = self.sqlstate


def _with_text(original: BaseException, text: str) -> BaseException:
    try:
        return type(original)(text)
    except Exception:
        return _Explained(text, original)


def _sequences_put_back(positions: SequencePositions) -> str:
    """One statement putting every sequence that moved since ``positions`` back."""
    values = ", ".join(
        f"({postgresql_ddl.literal(name)}, {int(start if last is None else last)}, "
        f"{'false' if last is None else 'true'}, "
        f"CAST({'NULL' if last is None else int(last)} AS bigint))"
        for name, (last, start) in positions.items()
    )
    # A sequence dropped since fails the cast, and so the script: the statements then
    # go one by one, which skip it.
    return (
        "SELECT pg_catalog.setval(CAST(t.s AS regclass), t.v, t.c) "
        f"FROM (VALUES {values}) AS t(s, v, c, l) "
        "WHERE pg_catalog.pg_sequence_last_value(CAST(t.s AS regclass)) IS DISTINCT FROM t.l"
    )
