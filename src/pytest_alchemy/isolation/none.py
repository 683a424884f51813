"""``none``: nothing is undone.

For read-only tests and suites that clean up after themselves. The test's
writes are committed for real; the leak check then fails each test that left
rows behind (and puts the tables back), unless ``leak_check`` is off. Every
kind of session state can outlive such a test, so the cycle checks them all.
"""

from __future__ import annotations

from typing import ClassVar

from sqlalchemy.engine import Connection

from .base import EndResult, Strategy, StrategyContext, TestTransaction


class NoneStrategy(Strategy):
    name: ClassVar[str] = "none"
    commits: ClassVar[bool] = True

    def begin(self, context: StrategyContext, connection: Connection) -> TestTransaction:
        return TestTransaction(connection)

    def end(self, context: StrategyContext, transaction: TestTransaction) -> EndResult:
        connection = transaction.connection
        if connection.in_transaction():
            # Work the test neither committed nor rolled back is discarded, as a
            # connection going back to a pool would discard it.
            connection.rollback()
        return EndResult()
