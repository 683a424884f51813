"""The isolation strategy interface: how a test's work is undone.

A strategy begins a test on a connection and ends it; what happens between
is the test's business. Strategies are written once against a synchronous
``Connection``: the async fixtures run the same code through
``AsyncConnection.run_sync``, so sync and async tests get identical rules.

Each strategy declares what it can and cannot undo, and the per-test cycle
(``cycle.py``) reads those declarations: whether the test's writes are really
committed, and which kinds of session state survive its end and must be
reset before the connection serves another test.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy.engine import Connection, RootTransaction


@dataclass(eq=False)
class TestTransaction:
    """One test's hold on a connection."""

    __test__ = False

    connection: Connection
    root: RootTransaction | None = None
    pid: int | None = None
    """The server's id for the connection (where the backend has one)."""
    ended_by_database: bool = False
    """The database ended the transaction on its own (a raw COMMIT, an implicit commit)."""

    @property
    def ended_by_test(self) -> bool:
        """The test ended the outer transaction itself (``commit()`` or ``rollback()``).

        Which of the two it was, the leak check tells: only a commit leaves rows behind.
        No event listener is needed to know, and an engine without listeners spares
        every statement of every test SQLAlchemy's event dispatch.
        """
        return self.root is not None and not self.root.is_active


class Strategy(ABC):
    """How one test is isolated."""

    name: ClassVar[str]
    commits: ClassVar[bool]
    """Whether the test's writes are really committed."""
    survivors: ClassVar[tuple[str, ...]]
    """Kinds of session state that outlive the end of a test under this strategy."""
    join_transaction_mode: ClassVar[str | None] = None

    @abstractmethod
    def begin(self, connection: Connection) -> TestTransaction: ...

    @abstractmethod
    def end(self, transaction: TestTransaction) -> str | None:
        """Undo the test's work; return why isolation was breached, if it was.

        Leaves the connection open and outside any transaction.
        """

    def session_options(self) -> dict[str, Any]:
        if self.join_transaction_mode is None:
            return {}
        return {"join_transaction_mode": self.join_transaction_mode}
