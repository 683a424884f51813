"""``savepoint``: one outer transaction per test, rolled back at the end.

SQLAlchemy's documented recipe for test suites: the connection begins a
transaction, sessions join it with ``join_transaction_mode="create_savepoint"``,
so their ``commit()`` releases a savepoint and their ``rollback()`` rolls back
to one, and the outer transaction is rolled back after the test. Test and app
code may commit, roll back, nest and raise freely.

What it cannot undo, it reports on the test that did it:

* a commit of the connection itself (``alchemy_connection.commit()``): the outer
  transaction is no longer active at the end, and the leak check finds the rows
  the commit made permanent (a commit that left nothing behind is harmless);
* the database ending the transaction on its own (a raw ``COMMIT`` statement,
  MySQL's implicit commit after DDL), seen when the rollback fails.

Session state that a rollback leaves behind (on PostgreSQL session advisory
locks and SQL ``PREPARE``) is the backend's to know; the cycle resets it.
"""

from __future__ import annotations

from typing import ClassVar

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from ..errors import first_line
from .base import EndResult, Strategy, StrategyContext, TestTransaction

COMMITTED = (
    "the test ended the outer transaction itself (alchemy_connection.commit() or .rollback(), "
    "or session.connection().commit()), and rows changed for good: what it wrote before a "
    "commit was permanent. Commit through a session instead, which pytest-alchemy turns "
    "into a savepoint release, or use alchemy_isolation = none for tests that must commit."
)
"""Said when the test ended the outer transaction and the leak check found rows it left."""
ENDED = (
    "the database ended the test's transaction on its own, so rows written before that point "
    "may have been committed. A raw COMMIT or ROLLBACK statement does that, and on MySQL so do "
    "DDL statements, which commit implicitly. Run such statements outside the test's "
    "connection, or use alchemy_isolation = none. The driver said: {error}"
)


class SavepointStrategy(Strategy):
    name: ClassVar[str] = "savepoint"
    commits: ClassVar[bool] = False
    join_transaction_mode: ClassVar[str | None] = "create_savepoint"
    supports_layers: ClassVar[bool] = True

    def begin(self, context: StrategyContext, connection: Connection) -> TestTransaction:
        return TestTransaction(connection, root=connection.begin())

    def end(self, context: StrategyContext, transaction: TestTransaction) -> EndResult:
        return EndResult(breach=self._end(transaction))

    def _end(self, transaction: TestTransaction) -> str | None:
        connection = transaction.connection
        if transaction.ended_by_test:
            if connection.in_transaction():
                connection.rollback()
            return COMMITTED
        if transaction.ended_by_database:
            _quiet_rollback(connection)
            return ENDED.format(error="the driver reports no open transaction any more")
        root = transaction.root
        try:
            if root is not None and root.is_active:
                root.rollback()
            elif connection.in_transaction():
                connection.rollback()
        except DBAPIError as error:
            if error.connection_invalidated:
                raise
            if connection.in_transaction():
                _quiet_rollback(connection)
            return ENDED.format(error=first_line(error))
        return None


def _quiet_rollback(connection: Connection) -> None:
    try:
        connection.rollback()
    except DBAPIError:
        connection.invalidate()
