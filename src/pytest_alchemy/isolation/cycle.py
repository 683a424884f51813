"""One test's cycle on a pooled connection: begin, end, check, reset.

Promises kept here, for every strategy and backend:

* **No state crosses tests.** After the strategy ends the test, one probe
  query finds the session state that survived (SQL ``PREPARE``, pragmas, and
  for strategies that commit for real, or a test that committed its outer
  transaction itself, also settings, temp tables, ``LISTEN``, cursors) and only
  that is reset; PostgreSQL's session advisory locks are released by the probe
  itself, which is cheaper than finding them. The connection then goes back to
  the pool: no new connection per test, and the driver's own statement cache
  stays valid.
* **A leak fails the test that caused it.** The same probe tells whether
  anything committed behind the test's back; only then the full comparison
  with the baseline runs, names the tables, and puts them back.
* **Teardown never leaves a broken connection in the pool.** Whatever fails
  while ending the test, the connection is invalidated rather than reused.

:class:`Cycle` is synchronous; the async fixtures call it through
``AsyncConnection.run_sync``, so both follow one set of rules.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection, Engine, Transaction
from sqlalchemy.exc import DBAPIError

from ..checks import SessionChecks, StateProbe
from ..engines import CheckoutTracker
from ..errors import ConfigurationError, first_line, mark_explained, message
from ..leaks import Baseline, TableLeak, capture
from ..restore import restore_baseline
from .base import Strategy, StrategyContext, TestTransaction
from .layers import Layer, check_kind, check_order, check_strategy, ended_by_test, unwind

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ..schema import SchemaSource
    from ..tables import TableRef


@dataclass
class CycleState:
    """What every test cycle of a run shares: the checks of its database, the baseline."""

    checks: SessionChecks
    schema: SchemaSource | None = None
    """Where the test database's schema came from (None: used as it was)."""
    baseline: Baseline | None = None
    active: set[int] = field(default_factory=set)
    """Server ids of the run's connections that are inside a test right now."""
    open_tests: int = 0
    """How many test connections are inside a test right now."""
    layers: list[Layer] = field(default_factory=list)
    """The layers of seed data set up right now, outermost first (see ``layers.py``)."""
    keep_tables: tuple[str, ...] = ()
    """Tables strategies that empty tables leave alone."""
    template: str | None = None
    """The template the test database was copied from (None: none this run), which
    nothing connects to: strategies that copy the database copy it."""
    template_holds: Baseline | None = None
    """The baseline whose rows the template holds too (None: it holds the schema only)."""
    opener: Callable[[str, Sequence[str]], Any] | None = None
    """Opens a driver connection to a database of the run's server as the run's sync
    engine would, and runs the statements given on it (None until that engine exists)."""
    opened: dict[str, Any] = field(default_factory=dict)
    """Driver connections opened ahead to databases acquired for single tests, by
    database: the sync test that gets the database takes its connection."""

    @property
    def layer(self) -> Layer | None:
        """The innermost layer set up right now: tests run on its connection."""
        return self.layers[-1] if self.layers else None

    @property
    def database(self) -> str:
        return self.checks.database

    def explain(self, context: Any) -> None:
        """``handle_error`` listener for every engine: raise the backend's clearer error."""
        better = self.checks.explain_error(context, self.open_tests, self.active)
        if better is not None:
            raise mark_explained(better).with_traceback(None) from context.original_exception

    def take_baseline(self, connection: Connection) -> Baseline:
        """Record the database as tests must find it; also the probe's starting point."""
        self.checks.prepare_connection(connection)
        with connection.begin():
            checks = self.checks
            names = checks.table_names(connection)
            sequences = checks.sequence_positions(connection)
            self.baseline = capture(connection, checks.images, names, sequences)
        self.checks.start_marker(connection)
        connection.rollback()
        return self.baseline


@dataclass
class Stats:
    """Timings and counts the terminal summary reports."""

    tests: int = 0
    leaks: int = 0
    resets: int = 0
    samples: list[float] = field(default_factory=list)
    """Each ended test's set-up plus teardown in seconds, in the order tests ended.

    One sample per test rather than a total: the first test also opens the pool's first
    connection and prepares its statements, so only a median of the tests after it
    (see :func:`pytest_alchemy.reporting.overhead`) tells what isolating a test costs.
    """


@dataclass
class Outcome:
    """What ending a test found."""

    breach: str | None = None
    leaks: list[TableLeak] = field(default_factory=list)
    reset: tuple[str, ...] = ()
    unrestored: list[str] = field(default_factory=list)
    """Tables that could not be put back, each with the reason."""
    blockers: tuple[str, ...] = ()
    """Sessions the test left inside a transaction on other connections (now ended)."""
    unreturned: list[str] = field(default_factory=list)
    """Where connections of the plugin's engines that were never returned were opened."""
    lost: bool = False
    """The connection died during the test; the server discarded its transaction."""
    restored: tuple[TableRef, ...] = ()
    """Tables the strategy emptied or put back itself."""
    problem: str | None = None
    """Why the test could not be ended on its connection (which was closed instead)."""

    def leak_message(self, nodeid: str) -> str | None:
        if not self.leaks:
            return None
        tables = "; ".join(leak.describe() for leak in self.leaks)
        restored = (
            "pytest-alchemy put these tables back to their baseline, so later tests start clean"
            if not self.unrestored
            else "pytest-alchemy could not restore "
            + ", ".join(self.unrestored)
            + "; rebuild the database with --alchemy-create-db"
        )
        return message(
            f"{nodeid} left changes in the database that its isolation did not undo: "
            f"{tables}. Something wrote through another connection (the app's own engine, a "
            "thread, a subprocess) or committed for real. Write through alchemy_session / "
            "alchemy_connection or the app sessions listed in alchemy_app_sessions, or "
            f"clean up in the test. {restored}. Seed rows that a fixture wider than a test "
            "commits through an engine of its own are found by the first test after it: make "
            "that fixture a layer, @pytest_alchemy.layer(scope=...) (its rows are seen by every "
            "test of its scope and undone after it), or commit them inside `with "
            "alchemy_blocker.unblock():`, which makes them the baseline every test starts from."
        )

    def breach_message(self, nodeid: str) -> str | None:
        if self.breach is None:
            return None
        return message(f"{nodeid}: {self.breach}")

    def unreturned_message(self, nodeid: str, engine: str) -> str | None:
        if not self.unreturned:
            return None
        return message(
            f"{nodeid} checked out {len(self.unreturned)} connection(s) of {engine} and never "
            f"returned them, opened at: {'; '.join(self.unreturned)}. Close them, for example "
            f"with `with {engine}.connect() as connection:`; an open connection keeps its "
            "transaction and locks."
        )

    def blocker_message(self, nodeid: str) -> str | None:
        if not self.blockers:
            return None
        return message(
            f"{nodeid} left {len(self.blockers)} other connection(s) inside a transaction on "
            f"the test database: {'; '.join(self.blockers)}. Open transactions hold locks that "
            "would make later tests wait, so pytest-alchemy ended those sessions (their "
            "uncommitted work is gone). Close the connections and sessions the test opens "
            "(with blocks), or use the test's own alchemy_connection / alchemy_session."
        )


@dataclass(eq=False)
class Hold:
    """One test's hold on a connection, from :meth:`Cycle.begin` to :meth:`Cycle.finish`."""

    connection: Connection
    transaction: TestTransaction
    strategy: Strategy
    context: StrategyContext
    leak_check: str
    tracker: CheckoutTracker
    tags: dict[str, Any]
    """Entries of ``connection.info`` that belong to this test only."""
    checks: SessionChecks
    """The checks of the database the test runs on."""
    database: str | None = None
    """The database the strategy acquired for the test, if not the run's own."""
    setup_seconds: float = 0.0
    """How long putting the test inside its isolation took."""
    ended: float = 0.0
    """When the test's teardown began (``time.perf_counter()``)."""
    settled: bool = False
    released: bool = False
    layer: Layer | None = None
    """The layer the test runs inside, on its connection."""
    run_engine: Engine | None = None
    """The run's engine for the test, when it runs on a database of its own."""


class Cycle:
    """Begins tests on connections of the run's engines and finishes them.

    Sync and async fixtures alike: they acquire the connection (the async ones on
    the test's event loop) and call :meth:`begin` and then, whatever happened in
    between, exactly one of :meth:`finish` (end the test on its connection) or
    :meth:`abandon` (the connection could not be used any more and was
    invalidated). Both record the figures of the terminal summary, report the
    connections the test never returned, and keep the run's count of open tests
    right, so a test whose set-up failed half-way leaves nothing behind.
    """

    def __init__(self, state: CycleState) -> None:
        self.state = state
        self.stats = Stats()
        self._trackers: dict[int, CheckoutTracker] = {}
        self._contexts: dict[int, StrategyContext] = {}

    def context(self, engine: Engine) -> StrategyContext:
        """What strategies see of the run, for tests on ``engine`` (made once per engine)."""
        found = self._contexts.get(id(engine))
        if found is None or found.engine is not engine:
            found = self._contexts[id(engine)] = StrategyContext(self.state, engine)
        return found

    def tracker(self, engine: Engine) -> CheckoutTracker:
        """The checkout tracker of one of the run's engines (made on first use)."""
        found = self._trackers.get(id(engine))
        if found is None:
            found = self._trackers[id(engine)] = CheckoutTracker(engine)
        return found

    def acquire(self, strategy: Strategy, engine: Engine) -> str | None:
        """The database ``strategy`` runs the test on, when not the run's (see
        :meth:`Strategy.acquire`); ``engine`` is the run's engine for the test."""
        return strategy.acquire(self.context(engine))

    def open(
        self,
        engine: Engine,
        strategy: Strategy,
        leak_check: str,
        *,
        started: float,
        engine_for: Callable[[str], Engine],
        where: str = "the test",
    ) -> Hold:
        """Connect and :meth:`begin` the test: on ``engine``, or on a database of its own
        through ``engine_for(name)`` (an engine without pool, disposed afterwards); inside
        a layer, on the layer's connection (``where`` names the test in errors)."""
        layer = self.state.layer
        if layer is not None:
            check_kind(layer, where, is_async=False)
            return self.begin_in_layer(
                layer, strategy, leak_check, where, tracker=self.tracker(engine), started=started
            )
        run_engine = engine
        database = self.acquire(strategy, engine)
        if database is not None:
            engine = engine_for(database)
        tracker = self.tracker(engine)
        tracker.own = True
        try:
            connection = engine.connect()
        except BaseException:
            self.give_back(strategy, engine, database)
            raise
        finally:
            tracker.own = False
        return self.begin(
            connection,
            strategy,
            leak_check,
            tracker=tracker,
            started=started,
            database=database,
            run_engine=run_engine,
        )

    def give_back(self, strategy: Strategy, engine: Engine, database: str | None) -> None:
        """Give back the database ``strategy`` acquired, with the engine made for it."""
        if database is None:
            return
        context = self.context(engine)
        self._trackers.pop(id(engine), None)
        self._contexts.pop(id(engine), None)
        engine.dispose()
        strategy.release(context, database)

    def begin(
        self,
        connection: Connection,
        strategy: Strategy,
        leak_check: str,
        *,
        tracker: CheckoutTracker,
        started: float,
        tags: dict[str, Any] | None = None,
        database: str | None = None,
        run_engine: Engine | None = None,
    ) -> Hold:
        """Put the test inside its isolation on ``connection`` (to the run's database, or
        to ``database`` acquired for it, instead of one of ``run_engine``); on failure,
        close it and give it back."""
        state = self.state
        context = self.context(connection.engine)
        tags = tags or {}
        checks = state.checks
        try:
            if database is not None:
                checks = checks.provisioner.checks(database)
            connection.info.update(tags)
            checks.prepare_connection(connection)
            transaction = strategy.begin(context, connection)
        except BaseException:
            connection.invalidate()
            connection.close()
            if database is not None:
                self.give_back(strategy, connection.engine, database)
            raise
        pid = connection.info.get("alchemy_pid")
        transaction.pid = pid
        if pid is not None:
            state.active.add(pid)
        state.open_tests += 1
        self.stats.tests += 1
        return Hold(
            connection,
            transaction,
            strategy,
            context,
            leak_check,
            tracker,
            tags,
            checks,
            database,
            setup_seconds=time.perf_counter() - started,
            run_engine=run_engine if database is not None else None,
        )

    def begin_in_layer(
        self,
        layer: Layer,
        strategy: Strategy,
        leak_check: str,
        where: str,
        *,
        tracker: CheckoutTracker,
        started: float,
        tags: dict[str, Any] | None = None,
    ) -> Hold:
        """Put the test inside a savepoint of ``layer``'s transaction, on its connection."""
        check_strategy(strategy, where, layer.name)
        connection = layer.connection
        tags = tags or {}
        connection.info.update(tags)
        try:
            layer.enter_test()
        except BaseException:
            for key in tags:
                connection.info.pop(key, None)
            raise
        state = self.state
        # The layer's connection stays among the run's active ones: no server id here.
        transaction = TestTransaction(connection)
        state.open_tests += 1
        self.stats.tests += 1
        return Hold(
            connection,
            transaction,
            strategy,
            self.context(connection.engine),
            leak_check,
            tracker,
            tags,
            state.checks,
            setup_seconds=time.perf_counter() - started,
            layer=layer,
        )

    def _end_in_layer(self, hold: Hold, sessions: Iterable[Session]) -> Outcome:
        """Roll the test back to its layer: its sessions closed, its savepoint rolled back.

        No probe and no leak check here: the layer's own rows are not committed, so a
        comparison with the baseline on this connection would take them for a leak.
        What another connection commits meanwhile is checked when the outermost layer
        ends (:meth:`end_layer`).
        """
        connection = hold.connection
        layer = hold.layer
        assert layer is not None
        outcome = Outcome()
        if connection.invalidated:
            layer.broken = message(
                f"the connection of {layer.described} was lost or closed during an earlier "
                "test, and with it the layer's rows."
            )
            outcome.lost = True
            return outcome
        try:
            for session in sessions:
                session.close()
            if not layer.transaction.is_active:
                layer.broken = message(ended_by_test(layer, "an earlier test"))
                outcome.breach = ended_by_test(layer, "the test")
                return outcome
            layer.leave_test()
        except DBAPIError as error:
            layer.broken = message(
                f"rolling a test back to {layer.described} failed, so the layer cannot serve "
                f"later tests. The driver said: {first_line(error)}"
            )
            connection.invalidate()
            outcome.problem = layer.broken
        return outcome

    def begin_layer(
        self,
        connection: Connection | None,
        name: str,
        scope: str,
        *,
        is_async: bool = False,
        async_connection: Any = None,
        engine: Any = None,
        loop: Any = None,
        loop_scope: str | None = None,
    ) -> Layer:
        """Set up a layer: the outermost one on ``connection`` (newly checked out), in a
        transaction; one inside another on its parent's connection, in a savepoint."""
        state = self.state
        check_order(state.layers, name, scope)
        parent = state.layer
        if parent is not None:
            kind = "an async" if is_async else "a sync"
            check_kind(parent, f"{kind} layer {name}", is_async=is_async)
            if is_async and parent.loop is not loop:
                raise ConfigurationError(
                    message(
                        f"the async layer {name} runs on another event loop than "
                        f"{parent.described}, inside which it is set up (loop scope "
                        f"{loop_scope!r} against {parent.loop_scope!r}). Give both the same "
                        "loop_scope."
                    )
                )
            connection = parent.connection
            transaction: Transaction = connection.begin_nested()
            async_connection, engine = parent.async_connection, parent.engine
        else:
            assert connection is not None
            state.checks.prepare_connection(connection)
            transaction = connection.begin()
            pid = connection.info.get("alchemy_pid")
            if pid is not None:
                state.active.add(pid)
        layer = Layer(
            name,
            scope,
            connection,
            transaction,
            parent=parent,
            is_async=is_async,
            async_connection=async_connection,
            engine=engine,
            loop=loop,
            loop_scope=loop_scope,
        )
        state.layers.append(layer)
        return layer

    def end_layer(self, layer: Layer, sessions: Iterable[Session] = ()) -> Outcome:
        """Undo ``layer``: its sessions closed, its transaction (or savepoint) rolled back.

        After the outermost layer, the connection is probed outside any transaction like
        after a test, and what another connection committed while the layers were set up
        is found, named and put back (on the layer: no test of it is to blame alone).
        The caller closes the connection of the outermost layer afterwards.
        """
        state = self.state
        if layer in state.layers:
            state.layers.remove(layer)
        connection = layer.connection
        outcome = Outcome()
        if connection.invalidated:
            outcome.lost = True
            return outcome
        try:
            for session in sessions:
                session.close()
            transaction = layer.transaction
            if transaction.is_active:
                unwind(connection, transaction)
                transaction.rollback()
            elif layer.outermost and connection.in_transaction():
                connection.rollback()
            if not layer.outermost:
                return outcome
            pid = connection.info.get("alchemy_pid")
            if pid is not None:
                state.active.discard(pid)
            backend = state.checks
            probe = backend.probe(
                connection, backend.survivors(committed=True), tuple(state.active)
            )
            if probe.leftovers:
                backend.reset(connection, probe.leftovers)
                outcome.reset = probe.leftovers
                self.stats.resets += 1
            suspicious = probe.committed_elsewhere or not backend.sees_own_commits
            if suspicious and state.baseline is not None:
                _check_and_restore(connection, backend, state.baseline, outcome)
                self.stats.leaks += bool(outcome.leaks)
        except DBAPIError:
            connection.invalidate()
            raise
        return outcome

    def _settle(self, hold: Hold) -> None:
        """The test is no longer running: once, however it ended."""
        if hold.settled:
            return
        hold.settled = True
        if hold.transaction.pid is not None:
            self.state.active.discard(hold.transaction.pid)
        self.state.open_tests -= 1

    def finish(self, hold: Hold, sessions: Iterable[Session] = ()) -> Outcome:
        """End the test and check the connection and database, close the test's
        ``sessions`` and then the connection (back to its pool).

        The sessions are closed once the test's transaction is over, whatever happened:
        a session's savepoint then has nothing left to roll back, which spares a round
        trip per test.
        """
        hold.ended = hold.ended or time.perf_counter()
        connection = hold.connection
        if hold.layer is not None:
            try:
                self._settle(hold)
                outcome = self._end_in_layer(hold, sessions)
            finally:
                if not connection.invalidated:
                    for key in hold.tags:
                        connection.info.pop(key, None)
            return self._recorded(hold, outcome)
        try:
            try:
                self._settle(hold)
                outcome = self._end(hold)
            finally:
                for session in sessions:
                    session.close()
        finally:
            if not connection.invalidated:
                for key in hold.tags:
                    connection.info.pop(key, None)
            connection.close()
            self.release(hold)
        return self._recorded(hold, outcome)

    def release(self, hold: Hold) -> None:
        """Give back the database the strategy acquired for the test (once; its
        connection closed): the engine made for it is disposed of."""
        if hold.released or hold.database is None:
            return
        hold.released = True
        self.give_back(hold.strategy, hold.context.engine, hold.database)

    def abandon(self, hold: Hold, problem: str) -> Outcome:
        """The test's connection could not be ended normally (``problem`` says why) and
        was invalidated: the database ends its transaction with it."""
        hold.ended = hold.ended or time.perf_counter()
        self._settle(hold)
        if hold.layer is not None:
            hold.layer.broken = message(
                f"the connection of {hold.layer.described} was closed after an earlier test "
                "(see its error), and with it the layer's rows."
            )
        return self._recorded(hold, Outcome(problem=problem))

    def _recorded(self, hold: Hold, outcome: Outcome) -> Outcome:
        tracker = hold.tracker
        if tracker.open:
            outcome.unreturned = tracker.leaked()
            tracker.forget()
        stats = self.stats
        stats.leaks += bool(outcome.leaks)
        stats.resets += bool(outcome.reset)
        stats.samples.append(hold.setup_seconds + time.perf_counter() - hold.ended)
        return outcome

    def _end(self, hold: Hold) -> Outcome:
        transaction = hold.transaction
        strategy = hold.strategy
        connection = transaction.connection
        state = self.state
        backend = hold.checks
        outcome = Outcome()
        if connection.invalidated:
            return _lost(transaction, outcome)
        if strategy.disposable:
            return self._end_disposable(hold, outcome)
        try:
            transaction.ended_by_database = backend.transaction_ended_by_driver(connection)
            ended_by_test = transaction.ended_by_test
            early = None
            if strategy.cleans_up:
                # The clean-up runs on this connection: as fresh as the next test's, and
                # waiting for no session the test left inside a transaction.
                if connection.in_transaction():
                    connection.rollback()
                survivors = backend.survivors(committed=True)
                first = backend.probe(connection, survivors, tuple(state.active))
                _tidy(connection, backend, first, outcome)
                transaction.committed = not first.quiet and (
                    first.committed_elsewhere or not backend.sees_own_commits
                )
            else:
                early = _probe_before_rollback(transaction, backend, strategy, state.active)
            ended = strategy.end(hold.context, transaction)
            outcome.breach = ended.breach
            outcome.restored = ended.restored
            if strategy.cleans_up and ended.verified and ended.breach is None:
                return outcome
            # A breach means the test's work was committed for real: then every kind of
            # session state (settings, temp tables, LISTEN, held cursors) may have survived.
            survivors = backend.survivors(committed=strategy.commits or ended.breach is not None)
            probe = early if early is not None and outcome.breach is None else None
            if probe is None:
                probe = backend.probe(connection, survivors, tuple(state.active))
            _tidy(connection, backend, probe, outcome)
            suspicious = (
                probe.committed_elsewhere
                or outcome.breach is not None
                or (strategy.commits and not backend.sees_own_commits)
            )
            if hold.leak_check != "off" and suspicious and state.baseline is not None:
                _check_and_restore(connection, backend, state.baseline, outcome)
            elif hold.leak_check == "off" and outcome.reset:
                # The reset can commit (DISCARD TEMP drops tables): past it, or the next
                # test would take what this unchecked test left for a leak of its own.
                backend.start_marker(connection)
            if ended_by_test and not outcome.leaks:
                # A rollback, or a commit that left nothing behind; the session state a
                # commit may have kept was probed and reset above all the same.
                outcome.breach = None
        except DBAPIError as error:
            if error.connection_invalidated:
                if not connection.invalidated:
                    connection.invalidate()
                return _lost(transaction, outcome)
            connection.invalidate()
            raise
        except BaseException as error:
            closed = _closed_by_the_test(connection, error)
            connection.invalidate()
            if closed:
                return _lost(transaction, outcome)
            raise
        return outcome

    def _end_disposable(self, hold: Hold, outcome: Outcome) -> Outcome:
        """End a test whose database is thrown away after it: nothing on it needs undoing
        or checking, but the run's database must be as the baseline has it (the test may
        have reached it through a connection of its own)."""
        connection = hold.connection
        try:
            if connection.in_transaction():
                connection.rollback()
        except DBAPIError:
            connection.invalidate()
        outcome.breach = hold.strategy.end(hold.context, hold.transaction).breach
        state = self.state
        engine = hold.run_engine
        if engine is None or state.baseline is None or hold.leak_check == "off":
            return outcome
        checks = state.checks
        with engine.connect() as run_connection:
            try:
                checks.prepare_connection(run_connection)
                probe = checks.probe(run_connection, (), tuple(state.active))
                if run_connection.in_transaction():
                    run_connection.rollback()
                if probe.committed_elsewhere:
                    _check_and_restore(run_connection, checks, state.baseline, outcome)
            except DBAPIError:
                run_connection.invalidate()
                raise
        return outcome


def _tidy(
    connection: Connection, backend: SessionChecks, probe: StateProbe, outcome: Outcome
) -> None:
    """Reset the session state ``probe`` found, and end the sessions it found blocking."""
    if probe.leftovers:
        backend.reset(connection, probe.leftovers)
        outcome.reset = tuple(dict.fromkeys((*outcome.reset, *probe.leftovers)))
    if probe.blockers:
        backend.end_sessions(connection, probe.blocker_ids)
        outcome.blockers = (*outcome.blockers, *probe.blockers)


def _closed_by_the_test(connection: Connection, error: BaseException) -> bool:
    """Whether ``error`` says the driver's connection is closed: the test closed it
    under SQLAlchemy's feet, and the database ended the transaction with it."""
    dialect = connection.dialect
    if not isinstance(error, dialect.loaded_dbapi.Error):
        return False
    return dialect.is_disconnect(error, connection.connection.dbapi_connection, None)


def _probe_before_rollback(
    transaction: TestTransaction, backend: SessionChecks, strategy: Strategy, active: set[int]
) -> StateProbe | None:
    """Probe inside the test's transaction, saving a round trip, where that is sound.

    Only before a rollback that undoes the test's work, on a transaction in a usable
    state: after a test that broke its transaction (an error it did not roll back),
    the probe runs after the rollback, as it does where the probe fails.
    """
    connection = transaction.connection
    if (
        not backend.probes_inside_transaction
        or strategy.commits
        or transaction.ended_by_test
        or transaction.ended_by_database
        or not connection.in_transaction()
        # Nothing ran on the connection: the driver has not begun a transaction, and
        # probing after the rollback (which then sends nothing) saves BEGIN and ROLLBACK.
        or not backend.driver_in_transaction(connection)
    ):
        return None
    try:
        survivors = backend.survivors(committed=False)
        return backend.probe(connection, survivors, tuple(active), inside=True)
    except DBAPIError as error:
        if error.connection_invalidated:
            raise
        return None


def _lost(transaction: TestTransaction, outcome: Outcome) -> Outcome:
    """The connection died (server restart, terminated session): the server dropped the
    test's transaction with it. The pool replaces the connection for the next test; the
    test itself has already seen the driver's error."""
    connection = transaction.connection
    with contextlib.suppress(DBAPIError):
        connection.rollback()
    outcome.lost = True
    return outcome


def _check_and_restore(
    connection: Connection, backend: SessionChecks, baseline: Baseline, outcome: Outcome
) -> None:
    repair = restore_baseline(connection, backend, baseline)
    outcome.leaks = repair.changed
    outcome.unrestored = repair.unrestored
