"""``clone`` (PostgreSQL): every test gets a database of its own, copied ahead of time.

For tests that change the schema, or commit for real and must not leave anything
behind, without paying for a ``CREATE DATABASE … TEMPLATE`` on their own time (120
to 170 ms on a small machine, whatever the copy strategy): a background thread keeps
a few copies ready (:class:`ClonePool`, the IntegreSQL idea), a test takes one, runs
on it, and gives it back to be dropped, again in the background.

The copies are made from a *source* that holds exactly what every test must find
(the baseline): the template the test database was copied from when it holds the
baseline's rows too; else a copy of that template with the baseline's rows put in;
else (no template this run) a copy of the test database itself. A source is made
again when the baseline changes (a fixture wider than a test committed rows).

Promises kept here:

* The pool is bounded (``size`` copies ready at a time) and never outlives the run:
  :meth:`CloneStrategy.close` drops whatever is left before the test database is
  dropped. Every copy is recorded as belonging to this run, so a run that died is
  cleaned up after by the next one, which reaps its databases.
* The test's connection, the sessions it makes, the app's sessions bound to it and
  the app's environment variables (``alchemy_env``) lead to the copy.
* A copy that cannot be made (the source stays in use, the server has no
  connection left) fails the test that waited for it with the reason and the
  strategies that work without a copy.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from ..errors import AlchemyError, ProvisionError, first_line, message
from ..leaks import reinsert
from ..provision.base import KIND_RUN, STATE_IN_USE, Record
from ..runs import RunIdentity
from ..urls import bounded_name, sync_url
from .base import EndResult, Strategy, StrategyContext, TestTransaction

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ..leaks import Baseline
    from ..provision import Provisioner
    from .cycle import CycleState

POOL_SIZE = 2
"""Copies kept ready: enough for a test to find one when it starts, few enough that
the copying does not compete with the tests for the machine."""

ALTERNATIVES = (
    "Tests that need real commits can use isolation='truncate' (tables emptied after "
    "the test) or isolation='recreate' (schema changes too), which need no copy."
)


@dataclass
class PoolFigures:
    """What the pool did, for the summary and the benchmarks."""

    waits: list[float] = field(default_factory=list)
    """Seconds each test waited for its copy, in the order they took them."""
    copies: int = 0
    copy_seconds: float = 0.0
    """Time the background thread spent copying, in total."""


class ClonePool:
    """Copies of ``source`` made ahead of the tests that take them, by threads of its own.

    ``provisioner`` is forked for each thread (:meth:`Provisioner.fork`: connections
    of its own), so the threads never wait for the run's connections nor for each
    other's. ``names`` gives each copy's name. ``prepare`` makes the source, before
    the first copy; ``after_copy(name)`` runs on each copy before it is ready. Up to
    ``size`` copies are ready or being made at a time, each
    thread making one: copies are made side by side, since most of a copy's time is
    spent waiting for the server's storage.
    """

    def __init__(
        self,
        provisioner: Provisioner,
        source: str,
        names: Callable[[], str],
        *,
        size: int = POOL_SIZE,
        prepare: Callable[[], None] | None = None,
        figures: PoolFigures | None = None,
        after_copy: Callable[[str], None] | None = None,
    ) -> None:
        self.provisioner = provisioner
        self._after_copy = after_copy
        self.source = source
        self._names = names
        self._size = max(1, size)
        self._prepare = prepare
        self._prepared = prepare is None
        self._ready: deque[str] = deque()
        self._copying = 0
        self._dropping: deque[str] = deque()
        self._made: set[str] = set()
        """Every copy made and not dropped yet (ready, in a test, or waiting to be dropped)."""
        self._condition = threading.Condition()
        self._error: BaseException | None = None
        self._closing = False
        self.figures = figures if figures is not None else PoolFigures()
        self._threads = [
            threading.Thread(
                target=self._work,
                args=(provisioner.fork(persistent=True), index == 0),
                name=f"pytest-alchemy clone pool {index}",
                daemon=True,
            )
            for index in range(self._size)
        ]
        for thread in self._threads:
            thread.start()

    # -- the run's side ---------------------------------------------------------

    def take(self) -> str:
        """A ready copy (waiting for one when none is); raises why none can be made."""
        started = time.perf_counter()
        with self._condition:
            while not self._ready and self._error is None:
                if not any(thread.is_alive() for thread in self._threads):
                    self._error = ProvisionError(message("the clone pool stopped."))
                    break
                self._condition.wait(1.0)
            if not self._ready:
                assert self._error is not None
                raise self._error
            name = self._ready.popleft()
            self._condition.notify_all()
        self.figures.waits.append(time.perf_counter() - started)
        return name

    def give_back(self, name: str) -> None:
        """The test on ``name`` is over: drop it, in the background."""
        with self._condition:
            self._dropping.append(name)
            self._condition.notify_all()

    def close(self) -> None:
        """Stop the threads and drop every copy left, whatever state it is in."""
        with self._condition:
            self._closing = True
            self._condition.notify_all()
        for thread in self._threads:
            thread.join()
        try:
            for name in sorted(self._made):
                self.provisioner.drop(name)
                self._made.discard(name)
        finally:
            self.provisioner.close()

    # -- the threads' side ------------------------------------------------------

    def _next_job(self) -> tuple[str, str] | None:
        with self._condition:
            while True:
                if self._closing:
                    return None
                filling = (
                    self._prepared
                    and self._error is None
                    and len(self._ready) + self._copying < self._size
                )
                if self._dropping and (self._ready or not filling):
                    return "drop", self._dropping.popleft()
                if filling:
                    self._copying += 1
                    return "copy", self._names()
                self._condition.wait()

    def _work(self, provisioner: Provisioner, first: bool) -> None:
        try:
            if first and self._prepare is not None:
                self._run_prepare()
            while True:
                job = self._next_job()
                if job is None:
                    return
                kind, name = job
                if kind == "drop":
                    self._drop(provisioner, name)
                else:
                    self._made_copy(provisioner, name)
        finally:
            provisioner.close()

    def _run_prepare(self) -> None:
        assert self._prepare is not None
        try:
            self._prepare()
        except BaseException as error:
            with self._condition:
                self._error = error
                self._condition.notify_all()
            return
        with self._condition:
            self._prepared = True
            self._condition.notify_all()

    def _drop(self, provisioner: Provisioner, name: str) -> None:
        try:
            provisioner.drop(name)
        except (DBAPIError, AlchemyError):
            return  # dropped at close, or reaped by the next run
        with self._condition:
            self._made.discard(name)

    def _made_copy(self, provisioner: Provisioner, name: str) -> None:
        started = time.perf_counter()
        try:
            self._copy(provisioner, name)
            if self._after_copy is not None:
                self._after_copy(name)
        except BaseException as error:
            with self._condition:
                self._copying -= 1
                self._error = error
                self._condition.notify_all()
            return
        with self._condition:
            self._copying -= 1
            self.figures.copies += 1
            self.figures.copy_seconds += time.perf_counter() - started
            self._ready.append(name)
            self._condition.notify_all()

    def _copy(self, provisioner: Provisioner, name: str) -> None:
        with self._condition:
            self._made.add(name)
        _copy_into(provisioner, self.source, name, small=True)


class CloneStrategy(Strategy):
    name: ClassVar[str] = "clone"
    commits: ClassVar[bool] = True
    requires: ClassVar[frozenset[str]] = frozenset({"clone"})
    disposable: ClassVar[bool] = True
    prepares_ahead: ClassVar[bool] = True
    pool_size: ClassVar[int] = POOL_SIZE

    def __init__(self) -> None:
        self._pool: ClonePool | None = None
        self._holds: Baseline | None = None
        """The baseline the pool's copies hold."""
        self._copy: str | None = None
        """A copy of the test database made before the first test (see :meth:`warm`)."""
        self._copy_holds: Baseline | None = None
        self._made: list[str] = []
        """The sources made for the pools (dropped at the end of the run)."""
        self._provisioner: Provisioner | None = None
        self._state: CycleState | None = None
        self._counter = 0
        self.figures = PoolFigures()
        """What every pool of the run did."""

    def summary(self) -> str | None:
        figures = self.figures
        if not figures.waits:
            return None
        waits = sorted(figures.waits)
        median = statistics.median(waits) * 1000
        each = figures.copy_seconds / figures.copies * 1000 if figures.copies else 0.0
        return (
            f"clone: {len(waits)} tests on copies made ahead ({figures.copies} made, "
            f"{each:.0f} ms each in the background); a test waited {median:.1f} ms for its "
            f"copy (median), {waits[-1] * 1000:.0f} ms at most"
        )

    def warm(self, context: StrategyContext) -> None:
        """Copy the test database now, while nothing is connected to it, when the
        template does not hold everything the tests must find (the seeding ran on the
        test database itself); then start filling the pool."""
        state = context.state
        if state.template is None or state.template_holds is not context.baseline:
            self._copy = self._copy_database(context, context.database, "source")
            self._copy_holds = context.baseline
        self._start(context)

    def acquire(self, context: StrategyContext) -> str | None:
        pool = self._pool
        if pool is None or context.baseline is not self._holds:
            pool = self._start(context)
        return pool.take()

    def release(self, context: StrategyContext, database: str) -> None:
        _close_quietly(context.state.opened.pop(database, None))
        if self._pool is not None:
            self._pool.give_back(database)

    def begin(self, context: StrategyContext, connection: Connection) -> TestTransaction:
        return TestTransaction(connection)

    def end(self, context: StrategyContext, transaction: TestTransaction) -> EndResult:
        # The copy is dropped: nothing to undo on it.
        return EndResult()

    def close(self) -> None:
        try:
            self._stop()
            if self._state is not None:
                opened, self._state.opened = self._state.opened, {}
                for connection in opened.values():
                    _close_quietly(connection)
        finally:
            provisioner, self._provisioner = self._provisioner, None
            if provisioner is not None:
                try:
                    for name in self._made:
                        provisioner.drop(name)
                finally:
                    self._made.clear()
                    provisioner.close()

    # -- the pool ---------------------------------------------------------------

    def _admin(self, context: StrategyContext) -> Provisioner:
        if self._provisioner is None:
            self._provisioner = context.provisioner.fork()
        return self._provisioner

    def _stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def _copy_database(self, context: StrategyContext, origin: str, suffix: str) -> str:
        """Copy ``origin`` into a new database of this run, now; its name."""
        provisioner = self._admin(context)
        name = bounded_name(f"{context.database}_{suffix}", provisioner.name_limit)
        if origin == context.database and not context.engine.dialect.is_async:
            # The run's idle connections to it would keep it from being copied.
            context.engine.dispose()
        self._made.append(name)
        _copy_into(provisioner, origin, name)
        return name

    def _start(self, context: StrategyContext) -> ClonePool:
        """A pool of copies holding the baseline (a new one when the baseline changed)."""
        self._stop()
        state = context.state
        database = context.database
        baseline = context.baseline
        provisioner = self._admin(context).fork()
        limit = provisioner.name_limit

        def names() -> str:
            self._counter += 1
            return bounded_name(f"{database}_c{self._counter}", limit)

        prepare = None
        if self._copy is not None and baseline is self._copy_holds:
            source = self._copy
        elif state.template is not None and baseline is state.template_holds:
            source = state.template
        else:
            # The rows changed since (a fixture wider than a test committed): a copy of
            # what holds the right schema, given the baseline's rows.
            origin = self._copy or state.template
            if origin is None:
                origin = self._copy_database(context, database, "source")
            source = bounded_name(f"{database}_source{len(self._made)}", limit)
            self._made.append(source)
            prepare = self._preparer(context, provisioner, origin, source, baseline)
        self._holds = baseline
        self._state = state
        self._pool = ClonePool(
            provisioner,
            source,
            names,
            size=self.pool_size,
            prepare=prepare,
            figures=self.figures,
            after_copy=self._opener(context),
        )
        return self._pool

    def _opener(self, context: StrategyContext) -> Callable[[str], None]:
        """Open the connection of the sync test that will take a copy ahead, with the
        server's caches of its tables loaded: a new server process on a new database
        would otherwise load them during the test's first statements."""
        state = context.state
        dialect = context.engine.dialect
        tables = list(context.baseline.tables) if context.baseline is not None else []
        warm = [f"SELECT 1 FROM {table.quoted(dialect)} LIMIT 0" for table in tables]

        def open_ahead(name: str) -> None:
            opener = state.opener
            if opener is None:
                return
            try:
                state.opened[name] = opener(name, warm)
            except Exception:
                return  # then the test connects by itself

        return open_ahead

    def _preparer(
        self,
        context: StrategyContext,
        provisioner: Provisioner,
        origin: str,
        source: str,
        fill: Baseline | None,
    ) -> Callable[[], None]:
        """Make the source: a copy of ``origin``, given the rows of ``fill`` (a baseline)."""
        url = sync_url(context.engine.url.set(database=source), purpose="the clone strategy")
        assert url is not None

        def prepare() -> None:
            _copy_into(provisioner, origin, source)
            if fill is None:
                return
            from ..engines import build_sync_engine

            engine = build_sync_engine(url, {"poolclass": NullPool}, provisioner)
            try:
                _fill(engine, provisioner, source, fill)
            finally:
                engine.dispose()

        return prepare


def _copy_into(provisioner: Provisioner, origin: str, name: str, *, small: bool = False) -> None:
    """Copy ``origin`` into the new database ``name`` of this run (one left with that name
    by no live run is dropped first); what fails says which strategies need no copy."""
    if provisioner.exists(name):
        found = provisioner.read_record(name)
        if found is not None and found.held_by_live_run():
            raise ProvisionError(message(f"the database {name} belongs to another run."))
        provisioner.drop(name)
    record = Record(kind=KIND_RUN, state=STATE_IN_USE, owner=RunIdentity.current())
    try:
        provisioner.clone(origin, name, record, small=small)
    except (ProvisionError, DBAPIError) as error:
        shown = error if isinstance(error, ProvisionError) else f"{first_line(error)}."
        raise ProvisionError(
            message(
                f"the clone strategy copies {origin} into {name} before the tests that need "
                f"it, and could not: {shown} {ALTERNATIVES}"
            )
        ) from None


def _close_quietly(connection: Any) -> None:
    """Close a driver connection opened ahead and not used (its database is dropped)."""
    if connection is None:
        return
    with contextlib.suppress(Exception):
        connection.close()


def _fill(engine: Engine, provisioner: Provisioner, database: str, baseline: Baseline) -> None:
    """Give the copy ``database`` (of a template holding the schema) the rows of
    ``baseline``: every table emptied, the seed rows put back, the sequences set."""
    checks = provisioner.checks(database)
    with engine.connect() as connection:
        checks.prepare_connection(connection)
        tables = [name for name in checks.table_names(connection) if name in baseline.tables]
        connection.rollback()
        with (
            checks.constraints_suspended(connection),
            connection.begin(),
            checks.triggers_suspended(connection),
        ):
            checks.empty_tables(connection, tables)
            missing = reinsert(connection, baseline, checks.images, tables)
            if missing:
                shown = ", ".join(name.shown for name in missing)
                raise ProvisionError(
                    message(
                        f"the clone strategy cannot copy the seed rows of {shown}: there are "
                        "too many to keep. Put the seed rows in the template "
                        f"(alchemy_seed_in_template = true). {ALTERNATIVES}"
                    )
                )
            checks.restore_sequences(connection, baseline.sequences)
