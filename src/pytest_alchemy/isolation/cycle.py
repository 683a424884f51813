"""One test's cycle on a pooled connection: begin, end, check, reset.

Promises kept here, for every strategy and backend:

* **No state crosses tests.** After the strategy ends the test, one probe
  query finds the session state that survived (advisory locks, SQL
  ``PREPARE``, pragmas, and for strategies that commit for real also
  settings, temp tables, ``LISTEN``, cursors) and only that is reset. The
  connection then goes back to the pool: no new connection per test, and the
  driver's own statement cache stays valid.
* **A leak fails the test that caused it.** The same probe tells whether
  anything committed behind the test's back; only then the full comparison
  with the baseline runs, names the tables, and puts them back.
* **Teardown never leaves a broken connection in the pool.** Whatever fails
  while ending the test, the connection is invalidated rather than reused.

The functions here are synchronous; async fixtures call them through
``AsyncConnection.run_sync``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.engine import Connection

from ..errors import message
from ..leaks import Baseline, TableLeak, capture, compare, reinsert
from ..provision import Backend
from .base import Strategy, TestTransaction

AUTOCOMMIT = "AUTOCOMMIT"


@dataclass
class RunState:
    """What every test cycle of a run shares: the backend, the database, the baseline."""

    backend: Backend
    database: str
    baseline: Baseline | None = None

    def take_baseline(self, connection: Connection) -> Baseline:
        """Record the database as tests must find it; also the probe's starting point."""
        self.backend.prepare_connection(connection)
        with connection.begin():
            self.baseline = capture(connection, self.backend.table_names(connection))
        self.backend.start_marker(connection)
        connection.rollback()
        return self.baseline


@dataclass
class Outcome:
    """What ending a test found."""

    breach: str | None = None
    leaks: list[TableLeak] = field(default_factory=list)
    reset: tuple[str, ...] = ()
    unrestored: list[str] = field(default_factory=list)

    def leak_message(self, nodeid: str) -> str | None:
        if not self.leaks:
            return None
        tables = "; ".join(leak.describe() for leak in self.leaks)
        restored = (
            "pytest-alchemy put these tables back to their baseline, so later tests start clean"
            if not self.unrestored
            else "pytest-alchemy could not restore "
            + ", ".join(self.unrestored)
            + " (too many seed rows to keep); rebuild the database with --alchemy-create-db"
        )
        return message(
            f"{nodeid} left changes in the database that its isolation did not undo: "
            f"{tables}. Something wrote through another connection (the app's own engine, a "
            "thread, a subprocess) or committed for real. Write through alchemy_session / "
            "alchemy_connection or the app sessions listed in alchemy_app_sessions, or "
            f"clean up in the test. {restored}."
        )

    def breach_message(self, nodeid: str) -> str | None:
        if self.breach is None:
            return None
        return message(f"{nodeid}: {self.breach}")


def open_test(connection: Connection, state: RunState, strategy: Strategy) -> TestTransaction:
    state.backend.prepare_connection(connection)
    return strategy.begin(connection)


def close_test(
    transaction: TestTransaction, state: RunState, strategy: Strategy, *, leak_check: str
) -> Outcome:
    """End the test and check the connection and database; the caller closes the connection."""
    connection = transaction.connection
    backend = state.backend
    outcome = Outcome()
    try:
        outcome.breach = strategy.end(transaction)
        connection.execution_options(isolation_level=AUTOCOMMIT)
        probe = backend.probe(connection, strategy.survivors)
        if probe.leftovers:
            backend.reset(connection, probe.leftovers)
            outcome.reset = probe.leftovers
        connection.rollback()
        suspicious = (
            probe.committed_elsewhere
            or outcome.breach is not None
            or (strategy.commits and not backend.sees_own_commits)
        )
        if leak_check != "off" and suspicious and state.baseline is not None:
            _check_and_restore(connection, state, outcome)
    except BaseException:
        connection.invalidate()
        raise
    return outcome


def _check_and_restore(connection: Connection, state: RunState, outcome: Outcome) -> None:
    backend = state.backend
    baseline = state.baseline
    assert baseline is not None
    leaks = compare(connection, baseline, backend.table_names(connection))
    connection.rollback()
    if not leaks:
        return
    outcome.leaks = leaks
    created = [leak.name for leak in leaks if leak.created]
    emptied = [leak.name for leak in leaks if not (leak.created or leak.dropped)]
    with connection.begin():
        backend.drop_tables(connection, state.database, created)
        backend.empty_tables(connection, state.database, emptied)
        after = compare(connection, baseline, backend.table_names(connection))
        refill = [leak.name for leak in after if leak.after == 0 and not leak.dropped]
        outcome.unrestored = reinsert(connection, baseline, refill)
        outcome.unrestored += [leak.name for leak in leaks if leak.dropped]
    backend.start_marker(connection)
    connection.rollback()
