"""``recreate``: the test commits for real; afterwards every table is dropped and made again.

For tests that change the schema (``ALTER TABLE``, ``DROP TABLE``, ``CREATE TABLE``),
which ``truncate`` cannot undo, as well as for everything ``truncate`` serves:
connections of their own, threads, other processes.

The schema is read once per run from the test database itself, when the first
test under ``recreate`` begins (see ``checks/ddl.py`` and the backend modules
beside it for what is read): whatever built it (metadata, Alembic, a hook) is not
run again. After a test that committed anything, in one transaction:

* every view, every table but the kept ones (``alchemy_keep_tables``) and, on
  PostgreSQL, every sequence that no kept table uses is dropped, those the test
  made included (PostgreSQL: one ``DROP TABLE … CASCADE`` of all of them);
* the tables are made again from the snapshot with their constraints and
  indexes, then get the rows the schema step created (seed rows, data
  migrations) from the baseline; then foreign keys are added (a cycle needs no
  ``use_alter``), then views, triggers and the rest: no trigger fires and no
  foreign key checks while the rows go back;
* sequences go back to where the baseline had them.

On PostgreSQL this is one query of many statements (one round trip, one
transaction); SQLite runs it statement by statement in one transaction with
foreign keys off. The kept tables are left as the test left them, and what they
hold becomes their baseline. Afterwards the database is at its baseline, so no
leak check follows; what a thread commits after the clean-up is found at the end
of the next test. On PostgreSQL a test after which nothing committed anywhere costs
no rebuild; SQLite cannot tell a connection's own commits, so every test is followed
by one there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from ..checks.ddl import SchemaSnapshot, kept
from ..errors import SchemaError, first_line, message
from .base import EndResult, Strategy, StrategyContext, TestTransaction

if TYPE_CHECKING:
    from ..leaks import Baseline
    from ..tables import TableRef

SHOWN_STATEMENT = 300
"""How much of a failing statement an error quotes."""


class RecreateStrategy(Strategy):
    name: ClassVar[str] = "recreate"
    commits: ClassVar[bool] = True
    cleans_up: ClassVar[bool] = True

    def __init__(self) -> None:
        self._snapshots: dict[str, tuple[Baseline, SchemaSnapshot]] = {}
        """Per test database, its schema's snapshot and the baseline it was taken at."""

    def begin(self, context: StrategyContext, connection: Connection) -> TestTransaction:
        self._snapshot(context, connection)
        return TestTransaction(connection)

    def _snapshot(self, context: StrategyContext, connection: Connection) -> SchemaSnapshot | None:
        """The snapshot of the test database's schema, read before the first test changes
        it (and again once the baseline was taken again); None without a baseline."""
        baseline = context.baseline
        if baseline is None:
            return None
        found = self._snapshots.get(context.database)
        if found is not None and found[0] is baseline:
            return found[1]
        try:
            taken = context.checks.schema_snapshot(connection, context.keep_tables)
        finally:
            connection.rollback()
        self._snapshots[context.database] = (baseline, taken)
        return taken

    def end(self, context: StrategyContext, transaction: TestTransaction) -> EndResult:
        baseline = context.baseline
        if baseline is None or not transaction.committed:
            # Nothing committed anywhere since the test began: nothing to rebuild.
            return EndResult(verified=baseline is not None)
        found = self._snapshots.get(context.database)
        if found is None or found[0] is not baseline:
            return EndResult()  # taken at no test's beginning: the leak check puts back
        snapshot = found[1]
        connection = transaction.connection
        checks = context.checks
        try:
            recreated = checks.recreate_tables(connection, snapshot, baseline)
        except DBAPIError as error:
            if error.connection_invalidated:
                raise
            raise SchemaError(_failed(error)) from error
        # What cannot be put back becomes the baseline; so do the kept tables' rows.
        baseline.emptied(recreated.unrestored)
        self._recapture_kept(context, connection, baseline, recreated.kept)
        # Past the clean-up's own commit, which the next probe must not count.
        checks.start_marker(connection)
        return EndResult(restored=tuple(recreated.tables), verified=not recreated.unrestored)

    def _recapture_kept(
        self,
        context: StrategyContext,
        connection: Connection,
        baseline: Baseline,
        present: list[TableRef],
    ) -> None:
        """What the kept tables hold now (the test may have written, made or dropped one)
        is what later tests must find."""
        keep = context.keep_tables
        gone = [name for name in baseline.tables if kept(name, keep) and name not in present]
        baseline.forget(gone)
        if not present:
            return
        images = context.checks.images
        expected = baseline.counts()
        looked = images.look(connection, present, digests="touched", expected=expected)
        measured = looked[1] if looked is not None else None
        if measured is None:
            measured = images.measure(connection, present, digests="touched", expected=expected)
        changed = [
            name
            for name in present
            if name not in baseline.tables
            or measured[name].count != baseline.tables[name].count
            or (
                None not in (measured[name].digest, baseline.tables[name].digest)
                and measured[name].digest != baseline.tables[name].digest
            )
        ]
        baseline.recapture(connection, images, changed)
        if connection.in_transaction():
            connection.rollback()


def _failed(error: DBAPIError) -> str:
    statement = " ".join(str(error.statement or "").split())
    if len(statement) > SHOWN_STATEMENT:
        statement = statement[:SHOWN_STATEMENT] + " …"
    return message(
        f"the recreate strategy could not rebuild the test database's tables: "
        f"{first_line(error)}, running {statement!r}. Nothing was changed, so the database "
        "is as the test left it and later tests may fail. If the test changed something "
        "the schema snapshot depends on (a type, a function, a schema), undo it in the "
        "test; rebuild the database with --alchemy-create-db."
    )
