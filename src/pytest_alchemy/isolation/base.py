"""The isolation strategy interface: how a test's work is undone.

A strategy begins a test on a connection and ends it; what happens between
is the test's business. Strategies are written once against a synchronous
``Connection``: the async fixtures run the same code through
``AsyncConnection.run_sync``, so sync and async tests get identical rules.

A strategy sees the run through a :class:`StrategyContext`: the backend's
checks (which also empty tables, behind the safety guard) and provisioner, the
test database, its schema source and baseline, and the engine the test's
connection came from. It says whether the test's writes are really committed (``commits``);
which session state can then outlive the test is the backend's knowledge,
which the per-test cycle (``cycle.py``) asks for. Its end returns an
:class:`EndResult`: why isolation was breached, if it was, and the tables it
put back itself. The cycle's leak check runs after every strategy all the
same, so a strategy that cleans up is checked like any other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy.engine import Connection, Engine, RootTransaction

if TYPE_CHECKING:
    from ..checks import SessionChecks
    from ..leaks import Baseline
    from ..provision import Provisioner
    from ..schema import SchemaSource
    from ..tables import TableRef
    from .cycle import CycleState


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
    committed: bool = True
    """Whether anything may have been committed since the test began: told to
    strategies that clean up (:attr:`Strategy.cleans_up`), True for the others."""

    @property
    def ended_by_test(self) -> bool:
        """The test ended the outer transaction itself (``commit()`` or ``rollback()``).

        Which of the two it was, the leak check tells: only a commit leaves rows behind.
        No event listener is needed to know, and an engine without listeners spares
        every statement of every test SQLAlchemy's event dispatch.
        """
        return self.root is not None and not self.root.is_active


@dataclass(frozen=True)
class StrategyContext:
    """What a strategy may use to isolate one test and undo its work."""

    state: CycleState
    engine: Engine
    """The engine the test's connection came from (an async engine's sync engine)."""

    @property
    def checks(self) -> SessionChecks:
        """The backend's checks of the test database: its tables, emptying them (behind
        the guard), what survives a test..."""
        return self.state.checks

    @property
    def provisioner(self) -> Provisioner:
        """The backend's provisioning: the test database's server, names and URLs."""
        return self.state.checks.provisioner

    @property
    def database(self) -> str:
        """The name of the test database."""
        return self.state.database

    @property
    def schema(self) -> SchemaSource | None:
        return self.state.schema

    @property
    def keep_tables(self) -> tuple[str, ...]:
        """Tables a strategy that empties tables leaves alone (``alchemy_keep_tables``)."""
        return self.state.keep_tables

    @property
    def baseline(self) -> Baseline | None:
        """The database as every test must find it (None before it was taken)."""
        return self.state.baseline


@dataclass(frozen=True)
class EndResult:
    """How a strategy ended a test."""

    breach: str | None = None
    """Why isolation was breached, if it was (said on the test that did it)."""
    restored: tuple[TableRef, ...] = ()
    """Tables the strategy emptied or put back itself."""
    verified: bool = False
    """The strategy compared the database with the baseline itself, after the test's
    last commit, and put it back (only with :attr:`Strategy.cleans_up`): no leak check
    follows. A commit made after that is found at the end of the next test."""


class Strategy(ABC):
    """How one test is isolated."""

    name: ClassVar[str]
    commits: ClassVar[bool]
    """Whether the test's writes are really committed."""
    requires: ClassVar[frozenset[str]] = frozenset()
    """What the backend must be able to do for this strategy (its provisioner's
    ``capabilities``, such as ``"clone"``)."""
    cleans_up: ClassVar[bool] = False
    """Whether :meth:`end` writes to the database to undo the test (emptying tables).
    The cycle then first resets the session state the test left on the connection
    and ends the sessions it left inside a transaction, so the clean-up runs on a
    connection as fresh as the next test's and waits for no lock; a clean-up that
    returns ``verified`` is not followed by another probe."""
    join_transaction_mode: ClassVar[str | None] = None
    disposable: ClassVar[bool] = False
    """Whether the database :meth:`acquire` gives a test is thrown away after it: the
    cycle then neither resets nor checks anything on it, and the leak check looks at
    the run's own database instead (which the test may have reached another way)."""
    supports_layers: ClassVar[bool] = False
    """Whether tests can run inside a layer of seed data with this strategy: each in a
    savepoint of the layer's transaction, rolled back at its end (see ``layers.py``)."""

    def acquire(self, context: StrategyContext) -> str | None:
        """The test database this test runs on, when it is not the run's own.

        A strategy that gives a test a database of its own (made behind the guard
        with ``context.provisioner``) returns its name: the test's connection is then
        opened there, without a pool, and checked like any other. None (the
        default): the run's test database, on a pooled connection.
        """
        return None

    def release(self, context: StrategyContext, database: str) -> None:  # noqa: B027
        """After a test ran on ``database`` (from :meth:`acquire`), its connection closed."""

    @abstractmethod
    def begin(self, context: StrategyContext, connection: Connection) -> TestTransaction: ...

    @abstractmethod
    def end(self, context: StrategyContext, transaction: TestTransaction) -> EndResult:
        """Undo the test's work. Leaves the connection open and outside any transaction."""

    prepares_ahead: ClassVar[bool] = False
    """Whether :meth:`warm` is called before the first test, once the test database is
    ready, when the collected tests (their markers, the settings) use this strategy."""

    def warm(self, context: StrategyContext) -> None:  # noqa: B027
        """Prepare what the strategy's tests will need, before any test connected (a
        copy of the test database must be made while nothing is connected to it)."""

    def close(self) -> None:  # noqa: B027
        """The run is over: give back whatever the strategy prepared for its tests (such
        as databases made ahead), before the run's test database is dropped."""

    def summary(self) -> str | None:
        """A line for the terminal summary about the run's tests (None: nothing to say)."""
        return None

    def session_options(self) -> dict[str, Any]:
        if self.join_transaction_mode is None:
            return {}
        return {"join_transaction_mode": self.join_transaction_mode}
