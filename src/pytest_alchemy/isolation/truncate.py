"""``truncate``: the test commits for real; afterwards the tables it wrote are emptied.

For code that a savepoint cannot hold: connections of its own, threads,
background tasks, other processes. Which tables were written is not recorded
statement by statement: after the test, one look at the database compares
every table with the baseline (row counts, and a digest of each table whose
count is the baseline's and not 0; on PostgreSQL only if it holds a row written
by a transaction committed during the test). Only the tables that differ are emptied, in one
transaction with the user's triggers suspended (PostgreSQL: one ``TRUNCATE …
RESTART IDENTITY CASCADE``; SQLite: ``DELETE``); the rows the schema step
created (seed rows, data migrations) are put back and sequences return to
where the baseline had them, so the next test gets the same ids. Tables named
in ``alchemy_keep_tables`` are left as the test left them.

Before the clean-up, the per-test cycle resets the session state the test left on
its connection and ends the sessions it left inside a transaction (which would
hold locks the ``TRUNCATE`` waits for). On PostgreSQL, a test after which
nothing committed anywhere costs no look at all. Whatever commits after the
clean-up (a thread still writing) is found at the end of the next test.
"""

from __future__ import annotations

from typing import ClassVar

from sqlalchemy.engine import Connection

from ..restore import restore_baseline
from .base import EndResult, Strategy, StrategyContext, TestTransaction

DROPPED = (
    "the test dropped {tables}, which the truncate strategy cannot put back; later tests "
    "run without it. Give tests that change the schema isolation='recreate' or "
    "isolation='clone' (PostgreSQL)."
)


class TruncateStrategy(Strategy):
    name: ClassVar[str] = "truncate"
    commits: ClassVar[bool] = True
    cleans_up: ClassVar[bool] = True

    def begin(self, context: StrategyContext, connection: Connection) -> TestTransaction:
        return TestTransaction(connection)

    def end(self, context: StrategyContext, transaction: TestTransaction) -> EndResult:
        connection = transaction.connection
        baseline = context.baseline
        if baseline is None or not transaction.committed:
            # Nothing committed anywhere since the test began: nothing to empty.
            return EndResult(verified=baseline is not None)
        checks = context.checks
        repair = restore_baseline(
            connection, checks, baseline, keep=context.keep_tables, detail=False, mark=True
        )
        dropped = [leak.shown for leak in repair.changed if leak.dropped]
        return EndResult(
            breach=DROPPED.format(tables=", ".join(dropped)) if dropped else None,
            restored=tuple(leak.name for leak in repair.changed),
            verified=not repair.unrestored,
        )
