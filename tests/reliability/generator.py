"""Seeded generator of randomized isolation tests, with the outcome each test must have.

``generate(seed, tests, strategy, backend, mode)`` writes a small project (models,
``pytest.ini`` with seed rows from ``alchemy_seed``, a ``conftest.py`` and a checks
module for the out-of-band checks, helpers and one test module) whose tests each do one
to five random operations on the test database. While it writes them, it keeps a model
of what each operation leaves behind once the test's isolation has been undone, so every
test comes with its expected outcome (:data:`OUTCOMES`):

* ``pass``: the test passes and leaves the database exactly as it found it;
* ``leak``: the test passes, but its teardown fails with pytest-alchemy's leak message
  naming exactly the tables (and row counts) in :attr:`GeneratedTest.leaked`;
* ``breach``: the test committed its outer transaction itself (``savepoint`` only) and
  rows changed for good, so its teardown fails saying so, with the leak message (a
  commit that left nothing behind passes);
* ``failed`` / ``failed+leak``: the test raised with uncommitted work in progress, which
  must be discarded (and what was committed before must still be reported).

The operations: ORM add + commit, add + rollback, ``begin_nested()`` with a partial
rollback, an ``IntegrityError`` caught in the middle of a transaction, raw SQL inserts,
updates and deletes on the test's connection, bulk inserts (executemany), sequences,
updates and deletes of seed rows (ORM and SQL), DDL on the test's connection, session
state that survives a rollback (PostgreSQL advisory locks, ``PREPARE``, settings, temp
tables, ``LISTEN``, held cursors; SQLite pragmas and temp tables), reads, and writes
that commit for real on another connection: an app-style engine made from
``alchemy_database.url``, and a thread with its own engine. A test may end with a
commit of its connection, with unfinished work (maybe raising), or with
``PRAGMA query_only = 1`` left on the connection.

SQLite projects of even seeds enforce foreign keys (``PRAGMA foreign_keys = ON`` in a
connect listener, the usual recipe), those of odd seeds do not.

What the model knows about each strategy is in :data:`SEMANTICS`; a strategy added to
the plugin needs one entry there.

SQLite allows one writer at a time. Under ``savepoint`` the test holds its transaction
from start to end, so once the test's own connection has read or written (taking
SQLite's shared or write lock), another connection can no longer commit. Writes from
another connection are therefore generated in two forms on SQLite: before the test's
connection has touched the database they commit for real (expected: leak), after it
they must fail within a short ``timeout`` with the plugin's explained "database is
locked" error (expected: the test passes and leaves nothing behind). The start-of-test
check on SQLite reads only plain pragmas and the temp schema, which take no lock on
the database file.

On PostgreSQL, other connections only touch rows and tables the test's own connection
never locks (they insert, and update or delete seed rows of ``tags`` only; the test's
connection alters only ``notes``), so no write waits for the test's transaction.

No pytest import: the reliability test and ``benchmarks/soak.py`` both use this module.
"""

from __future__ import annotations

import random
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

BACKENDS = ("sqlite", "postgresql")
MODES = ("sync", "async")
LOG_VARIABLE = "RELIABILITY_LOG"
"""Environment variable naming the JSON-lines file the out-of-band checks append to."""
LEAK_PHRASE = "left changes in the database that its isolation did not undo"
LOCKED_PHRASE = "a test is running inside an open transaction on the SQLite test database"
BREACH_PHRASE = "ended the outer transaction itself"
OUTCOMES = ("pass", "leak", "breach", "failed", "failed+leak")
MODULE = "test_generated.py"


@dataclass(frozen=True)
class Semantics:
    """What a strategy undoes, as far as the expected outcomes are concerned."""

    own_commits_persist: bool
    """A commit on the test's own connection or session is permanent (``none``)."""
    holds_transaction: bool
    """The test's connection stays inside one transaction for the whole test."""
    ddl_on_seed_tables: bool
    """ALTER TABLE on the model's tables is undone (only when nothing commits for real)."""
    cleans_up: bool = False
    """What was committed for real (by the test or another connection) is put back after
    the test: nothing leaks (``truncate``, ``recreate``)."""
    backends: tuple[str, ...] = ("sqlite", "postgresql")
    """The backends the strategy runs on."""


SEMANTICS: dict[str, Semantics] = {
    "savepoint": Semantics(
        own_commits_persist=False, holds_transaction=True, ddl_on_seed_tables=True
    ),
    "none": Semantics(own_commits_persist=True, holds_transaction=False, ddl_on_seed_tables=False),
    "truncate": Semantics(
        own_commits_persist=True,
        holds_transaction=False,
        ddl_on_seed_tables=False,
        cleans_up=True,
    ),
    "recreate": Semantics(
        own_commits_persist=True,
        holds_transaction=False,
        ddl_on_seed_tables=True,
        cleans_up=True,
    ),
    # The test's own commits go to its copy, which is dropped; other connections (made
    # from alchemy_database.url) write to the run's database: those are leaks.
    "clone": Semantics(
        own_commits_persist=False,
        holds_transaction=False,
        ddl_on_seed_tables=True,
        backends=("postgresql",),
    ),
}


def combinations(strategies: Sequence[str]) -> list[tuple[str, str, str]]:
    """Every strategy x backend it runs on x sync/async, for the ``strategies`` given."""
    return [
        (strategy, backend, mode)
        for strategy in strategies
        for backend in BACKENDS
        if backend in SEMANTICS[strategy].backends
        for mode in MODES
    ]


# -- the generated project's data ----------------------------------------------------------

SEED_USERS = [
    ("u1@example.com", "Ann", 10),
    ("u2@example.com", "Bob", 20),
    ("u3@example.com", "Cy O'Neil", 30),
    ("u4@example.com", "Dee", 40),
    ("u5@example.com", "Eve", 50),
]
SEED_ITEMS = [
    (1, "lamp", 1),
    (1, "desk", 2),
    (2, "chair", 4),
    (3, "pen", 8),
    (None, "orphan", 16),
    (2, "mug", 32),
    (3, "book", 64),
    (1, "plant", 128),
]
SEED_TAGS = ["red", "green", "blue", "it's"]
SEED_NOTES = ["first seed note", "second seed note"]

UNIQUE_EMAILS = (1, 2, 3)
"""Seed users never deleted: their emails make the duplicate key of the IntegrityError."""
DELETABLE_USERS = (4, 5)
"""Seed users without items: the only ones a test deletes (no foreign key breaks)."""


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_value(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return _sql_text(value)
    return str(value)


def _values(rows: Sequence[tuple[object, ...]]) -> str:
    return ", ".join("(" + ", ".join(_sql_value(v) for v in row) + ")" for row in rows)


INIT_SQL = [
    f"INSERT INTO users (email, name, score) VALUES {_values(SEED_USERS)}",
    f"INSERT INTO items (owner_id, title, qty) VALUES {_values(SEED_ITEMS)}",
    f"INSERT INTO tags (label) VALUES {_values([(label,) for label in SEED_TAGS])}",
    f"INSERT INTO notes (body) VALUES {_values([(body,) for body in SEED_NOTES])}",
]
SEED_ROWS: dict[str, list[tuple[object, ...]]] = {
    "users": [(index + 1, *row) for index, row in enumerate(SEED_USERS)],
    "items": [(index + 1, *row) for index, row in enumerate(SEED_ITEMS)],
    "tags": [(index + 1, label) for index, label in enumerate(SEED_TAGS)],
    "notes": [(index + 1, body) for index, body in enumerate(SEED_NOTES)],
    "events": [],
    "tickets": [],
}
"""Every table of the models and its rows right after the database is built."""
SEED_COUNTS = {table: len(rows) for table, rows in SEED_ROWS.items()}

MODELS = '''\
"""Models of the generated reliability project."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Sequence, String, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


FOREIGN_KEYS = {foreign_keys!r}


@event.listens_for(Engine, "connect")
def _foreign_keys(dbapi_connection, _record):
    """The usual SQLite recipe: enforce foreign keys on every connection of the process."""
    if FOREIGN_KEYS and "sqlite" in type(dbapi_connection).__module__:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()


TICKET_SEQ = Sequence("ticket_seq", metadata=Base.metadata)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(80))
    score: Mapped[int] = mapped_column(default=0)


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(String(80))
    qty: Mapped[int] = mapped_column(default=1)


class Tag(Base):
    __tablename__ = "tags"
    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(80), unique=True)


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(String(200))


class Event(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    payload: Mapped[str] = mapped_column(String(80))


class Ticket(Base):
    """AUTOINCREMENT on SQLite (sqlite_sequence), numbers from ticket_seq on PostgreSQL."""

    __tablename__ = "tickets"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int | None] = mapped_column(BigInteger)
    note: Mapped[str] = mapped_column(String(80))
'''

HELPERS = '''\
"""Helpers of the generated tests: writes through connections the test does not own."""

from __future__ import annotations

import threading

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

LOCKED = {locked!r}
SYNC_DRIVERS = {{"asyncpg": "postgresql+psycopg", "psycopg_async": "postgresql+psycopg"}}


def sync_url(url):
    """The test database's URL with a sync driver (the run may be configured with asyncpg)."""
    driver = SYNC_DRIVERS.get(url.get_driver_name())
    return url if driver is None else url.set(drivername=driver)


def _engine(url, timeout=None):
    url = sync_url(url)
    connect_args = {{}}
    if url.get_backend_name() == "sqlite":
        if timeout is not None:
            connect_args["timeout"] = timeout
    else:
        # A wait for a lock the test holds would be a bug of the generator: fail, never hang.
        connect_args["options"] = "-c lock_timeout=10000"
    return sa.create_engine(url, poolclass=NullPool, connect_args=connect_args)


def other_write(url, statements, timeout=None):
    """Commit ``statements`` for real, the way app code with its own engine would."""
    engine = _engine(url, timeout)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(sa.text(statement))
    finally:
        engine.dispose()


def thread_write(url, statements, timeout=None):
    """``other_write`` in a thread; returns the exception it raised, or None."""
    box = []

    def work():
        try:
            other_write(url, statements, timeout)
        except BaseException as error:
            box.append(error)

    thread = threading.Thread(target=work, name="reliability-writer")
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the writer thread hangs"
    return box[0] if box else None
'''

CHECKS = '''\
"""Out-of-band checks of the generated reliability suite.

``conftest.py`` runs ``after_test`` once the plugin's own teardown of a test is over,
on a NullPool connection of its own; the tests call ``start_check`` first thing, on the
plugin's connection. Violations are appended as JSON lines to the file named by
${log_variable}: the tests never fail because of them, the outer test reads the file.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from reliability_helpers import sync_url

BACKEND = ${backend!r}
SEED_ROWS = ${seed_rows!r}
LOG = os.environ.get(${log_variable!r})
SQLITE_PRAGMAS = ("recursive_triggers", "reverse_unordered_selects", "query_only")
STATE = {}


def record(nodeid, kind, what, detail=None):
    if not LOG:
        return
    line = json.dumps(
        {"nodeid": nodeid, "kind": kind, "what": what, "detail": detail}, default=repr
    )
    with open(LOG, "a", encoding="utf-8") as log:
        log.write(line + "\\n")


def violation(nodeid, what, detail=None):
    record(nodeid, "violation", what, detail)


def _tables(connection):
    if BACKEND == "sqlite":
        names = connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).scalars()
        return sorted(('"' + name + '"', name) for name in names)
    rows = connection.exec_driver_sql(
        "SELECT schemaname, tablename FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
    ).all()
    return sorted(
        ('"' + schema + '"."' + name + '"', name if schema == "public" else schema + "." + name)
        for schema, name in rows
    )


IN_TRANSACTION = (
    "SELECT pid, state, left(query, 200), xact_start FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND backend_type = 'client backend' AND xact_start IS NOT NULL"
)


def _in_transaction(connection):
    """Sessions inside a transaction, seen again for a moment: a session reported
    between the end of its statement and the end of its transaction (the server updates
    its activity entry in two steps) is not left inside one."""
    seen = {row[0]: row for row in connection.exec_driver_sql(IN_TRANSACTION)}
    for _ in range(5):
        if not seen:
            break
        time.sleep(0.02)
        again = {row[0]: row for row in connection.exec_driver_sql(IN_TRANSACTION)}
        seen = {pid: row for pid, row in seen.items() if pid in again and again[pid][3] == row[3]}
    return [tuple(row[:3]) for row in seen.values()]


def look(connection):
    """Every table's rows (a multiset), sessions, locks and sequences, seen from outside."""
    tables = {}
    for quoted, name in _tables(connection):
        rows = connection.exec_driver_sql("SELECT * FROM " + quoted).all()
        tables[name] = Counter(repr(tuple(row)) for row in rows)
    found = {"tables": tables}
    if BACKEND == "sqlite":
        found["sequences"] = sorted(
            tuple(row) for row in connection.exec_driver_sql("SELECT * FROM sqlite_sequence")
        )
        return found
    found["in_transaction"] = _in_transaction(connection)
    found["advisory_locks"] = [
        tuple(row)
        for row in connection.exec_driver_sql(
            "SELECT pid, classid, objid, mode FROM pg_locks WHERE locktype = 'advisory' "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    ]
    found["temp_tables"] = connection.exec_driver_sql(
        "SELECT count(*) FROM pg_class WHERE relpersistence = 't'"
    ).scalar_one()
    found["sequences"] = sorted(
        tuple(row)
        for row in connection.exec_driver_sql(
            "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public'"
        )
    )
    return found


def engine_for(url):
    engine = STATE.get("engine")
    if engine is None:
        engine = STATE["engine"] = sa.create_engine(sync_url(url), poolclass=NullPool)
    return engine


def take_baseline(engine, nodeid):
    """Once, before the first test: the database as every test must leave it."""
    with engine.connect() as connection:
        found = look(connection)
        if BACKEND == "postgresql":
            STATE["work_mem"] = connection.exec_driver_sql("SHOW work_mem").scalar_one()
        connection.rollback()
    expected = {
        table: Counter(repr(tuple(row)) for row in rows) for table, rows in SEED_ROWS.items()
    }
    if found["tables"] != expected:
        violation(nodeid, "baseline differs from the seed rows", repr(found["tables"]))
    STATE["baseline"] = found
    STATE["sequences"] = found["sequences"]


def after_test(engine, nodeid):
    """After the plugin's teardown: the database is exactly the baseline."""
    with engine.connect() as connection:
        found = look(connection)
        connection.rollback()
    baseline = STATE["baseline"]
    if set(found["tables"]) != set(baseline["tables"]):
        violation(
            nodeid,
            "tables differ",
            {
                "added": sorted(set(found["tables"]) - set(baseline["tables"])),
                "missing": sorted(set(baseline["tables"]) - set(found["tables"])),
            },
        )
    for table, rows in found["tables"].items():
        before = baseline["tables"].get(table)
        if before is not None and rows != before:
            violation(
                nodeid,
                "rows differ in " + table,
                {
                    "extra": sorted((rows - before).elements())[:5],
                    "missing": sorted((before - rows).elements())[:5],
                },
            )
    for key in ("in_transaction", "advisory_locks"):
        if found.get(key):
            violation(nodeid, key, found[key])
    if found.get("temp_tables"):
        violation(nodeid, "temp tables left on some session", found["temp_tables"])
    if found["sequences"] != STATE["sequences"]:
        # Sequences are not reset by savepoint or none: recorded, not required.
        record(nodeid, "note", "sequences advanced", found["sequences"])
        STATE["sequences"] = found["sequences"]


def start_check(connection, nodeid):
    """At the start of a test, on the plugin's own connection: no state from earlier tests."""
    was_in_transaction = connection.in_transaction()
    if connection.dialect.driver not in STATE.setdefault("drivers", set()):
        STATE["drivers"].add(connection.dialect.driver)
        record(nodeid, "driver", connection.dialect.driver)
    if BACKEND == "sqlite":
        # Plain pragmas and the temp schema only: they take no lock on the database file.
        for pragma in SQLITE_PRAGMAS:
            value = connection.exec_driver_sql("PRAGMA " + pragma).scalar()
            if value != 0:
                violation(nodeid, "pragma " + pragma + " at the start", value)
        temp = connection.exec_driver_sql("SELECT count(*) FROM temp.sqlite_master").scalar()
        if temp:
            violation(nodeid, "temp tables at the start", temp)
    else:
        row = connection.exec_driver_sql(
            # The plugin's own prepared check (alchemy_probe_...) is not the tests' state.
            "SELECT (SELECT count(*) FROM pg_prepared_statements WHERE from_sql "
            "AND left(name, 14) <> 'alchemy_probe_'), "
            "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND pid = pg_backend_pid()), current_setting('work_mem'), "
            "(SELECT count(*) FROM pg_listening_channels()), "
            "(SELECT count(*) FROM pg_cursors WHERE name = 'rel_cursor'), "
            "(SELECT count(*) FROM pg_class WHERE relpersistence = 't' "
            "AND relnamespace = pg_my_temp_schema())"
        ).one()
        prepared, advisory, work_mem, listening, cursors, temp = row
        for what, value in (
            ("prepared statements", prepared),
            ("advisory locks", advisory),
            ("listening channels", listening),
            ("held cursors", cursors),
            ("temp tables", temp),
        ):
            if value:
                violation(nodeid, what + " at the start", value)
        if work_mem != STATE.get("work_mem", work_mem):
            violation(nodeid, "work_mem at the start", work_mem)
    if not was_in_transaction:
        connection.rollback()
'''

CONFTEST = '''\
"""The out-of-band check of every generated test, after the plugin's teardown.

``_out_of_band`` is autouse and defined here, and at set-up it requests only the
session-scoped ``alchemy_database``: pytest sets it up before the plugin's per-test
fixtures (the test's own arguments) and so tears it down after them. That order is
verified for every test: ``pytest_fixture_post_finalizer`` records which fixtures were
torn down, and the plugin's per-test fixture must be among them by then.
"""

import pytest

import reliability_checks as checks

PLUGIN_TEST_FIXTURES = ("_alchemy_sync_test", "_alchemy_async_test_")
_finalized = []


def pytest_fixture_post_finalizer(fixturedef, request):
    _finalized.append(fixturedef.argname)


@pytest.fixture(autouse=True)
def _out_of_band(request):
    nodeid = request.node.nodeid
    engine = checks.engine_for(request.getfixturevalue("alchemy_database").url)
    if "baseline" not in checks.STATE:
        checks.take_baseline(engine, nodeid)
    mark = len(_finalized)
    yield
    torn_down = [name for name in _finalized[mark:] if name.startswith(PLUGIN_TEST_FIXTURES)]
    if not torn_down:
        checks.violation(nodeid, "checked before the plugin's teardown", _finalized[mark:])
    checks.after_test(engine, nodeid)
'''


@dataclass
class GeneratedTest:
    name: str
    nodeid: str
    expected: str
    """One of :data:`OUTCOMES`: ``pass``; ``leak`` (teardown fails with the leak message);
    ``breach`` (teardown fails because the test committed the outer transaction and left
    rows behind, with the leak message); ``failed`` (the test itself raised, its work
    in progress is discarded); ``failed+leak``."""
    leaked: dict[str, tuple[int, int]]
    """Table -> (rows before, rows after) the leak message must name; empty: no leak message."""
    operations: list[str]


@dataclass
class Generated:
    seed: int
    strategy: str
    backend: str
    mode: str
    files: dict[str, str]
    tests: list[GeneratedTest]
    foreign_keys: bool
    """SQLite: the project enforces foreign keys (PostgreSQL always does)."""

    @property
    def module(self) -> str:
        return self.files[MODULE]

    @property
    def conftest(self) -> str:
        return self.files["conftest.py"]

    @property
    def id(self) -> str:
        return f"{self.strategy}-{self.backend}-{self.mode}"

    @property
    def variant(self) -> str:
        if self.backend != "sqlite":
            return ""
        return "foreign keys on" if self.foreign_keys else "foreign keys off"


# -- the model of one test ---------------------------------------------------------------------


@dataclass
class Effects:
    """Row changes against the seed, per table; created tables with their rows."""

    inserted: dict[str, int] = field(default_factory=dict)
    modified: dict[str, set[int]] = field(default_factory=dict)
    deleted: dict[str, set[int]] = field(default_factory=dict)
    created: dict[str, int] = field(default_factory=dict)

    def insert(self, table: str, count: int) -> None:
        self.inserted[table] = self.inserted.get(table, 0) + count

    def modify(self, table: str, ids: set[int]) -> None:
        self.modified.setdefault(table, set()).update(ids)

    def delete(self, table: str, ids: set[int]) -> None:
        self.deleted.setdefault(table, set()).update(ids)

    def merge(self, other: Effects) -> None:
        for table, count in other.inserted.items():
            self.insert(table, count)
        for table, ids in other.modified.items():
            self.modify(table, ids)
        for table, ids in other.deleted.items():
            self.delete(table, ids)
        for table, rows in other.created.items():
            self.created[table] = self.created.get(table, 0) + rows

    def leaked(self) -> dict[str, tuple[int, int]]:
        found: dict[str, tuple[int, int]] = {}
        for table, before in SEED_COUNTS.items():
            deleted = self.deleted.get(table, set())
            modified = self.modified.get(table, set()) - deleted
            inserted = self.inserted.get(table, 0)
            if deleted or modified or inserted:
                found[table] = (before, before - len(deleted) + inserted)
        for table, rows in self.created.items():
            found[table] = (0, rows)
        return found


@dataclass
class Test:
    """The state of the test being generated."""

    index: int
    rng: random.Random
    semantics: Semantics
    backend: str
    mode: str
    lines: list[str] = field(default_factory=list)
    committed: Effects = field(default_factory=Effects)
    """What is committed for real: what the leak check must find after the test."""
    root: Effects = field(default_factory=Effects)
    """What sits in the strategy's outer transaction (undone at the end, unless committed)."""
    pending: Effects = field(default_factory=Effects)
    """The current operation's writes, until it commits or rolls back."""
    altered: bool = False
    """A model table was altered inside the outer transaction."""
    outcome: str = "pass"
    touched: bool = False
    """The test's connection read or wrote the database inside its current transaction."""
    maybe_deleted: dict[str, set[int]] = field(default_factory=dict)
    used_state: set[str] = field(default_factory=set)
    operations: list[str] = field(default_factory=list)
    read_only: bool = False
    """``PRAGMA query_only = 1`` was set: nothing may write on the test's connection anymore."""
    counter: int = 0

    @property
    def aw(self) -> str:
        return "await " if self.mode == "async" else ""

    @property
    def sqlite(self) -> bool:
        return self.backend == "sqlite"

    def token(self) -> str:
        self.counter += 1
        return f"t{self.index}x{self.counter}"

    def emit(self, *lines: str) -> None:
        self.lines.extend(lines)

    def own_access(self) -> None:
        self.touched = True

    def end_own(self, commit: bool) -> None:
        """The current operation commits (for real, or into the outer transaction) or not."""
        if commit:
            if self.semantics.own_commits_persist:
                self.committed.merge(self.pending)
            else:
                self.root.merge(self.pending)
        self.pending = Effects()
        if not self.semantics.holds_transaction:
            self.touched = False

    def alive(self, table: str, choices: tuple[int, ...] | range) -> list[int]:
        gone = self.maybe_deleted.get(table, set())
        return [row for row in choices if row not in gone]

    def forget(self, table: str, ids: set[int]) -> None:
        self.maybe_deleted.setdefault(table, set()).update(ids)

    # -- code for the session and the connection --------------------------------------------

    def session_end(self, commit: bool) -> None:
        self.emit(f"{self.aw}s.{'commit' if commit else 'rollback'}()")
        self.end_own(commit)

    def connection_end(self) -> None:
        """Raw SQL under a strategy that does not hold the transaction ends it itself."""
        if self.semantics.holds_transaction:
            self.end_own(True)  # stays in the outer transaction
            return
        commit = self.rng.random() < 0.7
        self.emit(f"{self.aw}c.{'commit' if commit else 'rollback'}()")
        self.end_own(commit)

    def execute(self, sql: str) -> None:
        self.emit(f"{self.aw}c.execute(text({sql!r}))")


# -- operations ------------------------------------------------------------------------------


def _user(test: Test) -> str:
    token = test.token()
    score = test.rng.randint(0, 99)
    return f"User(email={token + '@t'!r}, name={token!r}, score={score})"


def _item(test: Test) -> str:
    owner = test.rng.choice([1, 2, 3, None])
    return f"Item(owner_id={owner}, title={test.token()!r}, qty={test.rng.randint(1, 9)})"


def _tag(test: Test) -> str:
    return f"Tag(label={test.token()!r})"


def _new_rows(test: Test, count: int) -> tuple[list[str], Effects]:
    effects = Effects()
    made = []
    for _ in range(count):
        table, make = test.rng.choice([("users", _user), ("items", _item), ("tags", _tag)])
        made.append(make(test))
        effects.insert(table, 1)
    return made, effects


def op_orm_commit(test: Test) -> None:
    made, effects = _new_rows(test, test.rng.randint(1, 5))
    test.emit(f"s.add_all([{', '.join(made)}])")
    if test.rng.random() < 0.4:
        test.emit(f"{test.aw}s.flush()")
    test.own_access()
    test.pending.merge(effects)
    test.session_end(True)


def op_orm_rollback(test: Test) -> None:
    made, _ = _new_rows(test, test.rng.randint(1, 5))
    test.emit(f"s.add_all([{', '.join(made)}])")
    if test.rng.random() < 0.6:
        test.emit(f"{test.aw}s.flush()")
        test.own_access()
    test.session_end(False)


def op_nested(test: Test) -> None:
    """begin_nested(): the inner part rolled back, the outer part committed."""
    kept, kept_effects = _new_rows(test, test.rng.randint(1, 3))
    dropped, _ = _new_rows(test, test.rng.randint(1, 3))
    aw = test.aw
    test.emit(f"s.add_all([{', '.join(kept)}])")
    test.emit(f"nested = {aw}s.begin_nested()")
    test.emit(f"s.add_all([{', '.join(dropped)}])", f"{aw}s.flush()", f"{aw}nested.rollback()")
    test.own_access()
    test.pending.merge(kept_effects)
    if test.rng.random() < 0.5:
        inner, inner_effects = _new_rows(test, test.rng.randint(1, 2))
        test.emit(
            f"{'async ' if test.mode == 'async' else ''}with s.begin_nested():",
            f"    s.add_all([{', '.join(inner)}])",
        )
        test.pending.merge(inner_effects)
    if test.rng.random() < 0.5:
        after, after_effects = _new_rows(test, 1)
        test.emit(f"s.add_all([{', '.join(after)}])")
        test.pending.merge(after_effects)
    test.session_end(True)


def op_integrity_error(test: Test) -> None:
    """A duplicate key mid-transaction, caught; roll back, write more, commit."""
    aw = test.aw
    lost, _ = _new_rows(test, test.rng.randint(0, 2))
    if lost:
        test.emit(f"s.add_all([{', '.join(lost)}])", f"{aw}s.flush()")
    duplicate = SEED_USERS[test.rng.choice(UNIQUE_EMAILS) - 1][0]
    test.emit(
        f"s.add(User(email={duplicate!r}, name={test.token()!r}))",
        "with pytest.raises(IntegrityError):",
        f"    {aw}s.flush()",
        f"{aw}s.rollback()",
    )
    test.own_access()
    test.end_own(False)
    kept, effects = _new_rows(test, test.rng.randint(1, 3))
    test.emit(f"s.add_all([{', '.join(kept)}])")
    test.pending.merge(effects)
    test.session_end(True)


def op_raw_insert(test: Test) -> None:
    count = test.rng.randint(1, 4)
    rows: list[tuple[object, ...]]
    if test.rng.random() < 0.5:
        rows = [(test.rng.choice([1, 2, 3, None]), test.token(), test.rng.randint(1, 9))]
        rows += [(test.rng.choice([1, 2, 3]), test.token(), 1) for _ in range(count - 1)]
        test.execute(f"INSERT INTO items (owner_id, title, qty) VALUES {_values(rows)}")
        test.pending.insert("items", count)
    else:
        rows = [(test.token() + "@r", "raw", test.rng.randint(0, 9)) for _ in range(count)]
        test.execute(f"INSERT INTO users (email, name, score) VALUES {_values(rows)}")
        test.pending.insert("users", count)
    test.own_access()
    test.connection_end()


def _seed_target(test: Test, deleting: bool) -> tuple[str, list[int]]:
    if deleting:
        table = test.rng.choice(["users", "items"])
        choices: tuple[int, ...] | range = (
            DELETABLE_USERS if table == "users" else range(1, len(SEED_ITEMS) + 1)
        )
    else:
        table = test.rng.choice(["users", "items", "notes"])
        choices = range(1, SEED_COUNTS[table] + 1)
    return table, test.alive(table, choices)


def op_raw_update(test: Test) -> None:
    table, alive = _seed_target(test, deleting=False)
    ids = set(test.rng.sample(alive, min(len(alive), test.rng.randint(1, 2)))) if alive else set()
    if not ids:
        ids = {1}
    where = f"id IN ({', '.join(str(i) for i in sorted(ids))})"
    value = _sql_text(test.token())
    if table == "users":
        test.execute(f"UPDATE users SET name = {value}, score = score + 1 WHERE {where}")
    elif table == "items":
        test.execute(f"UPDATE items SET title = {value}, qty = qty + 1 WHERE {where}")
    else:
        test.execute(f"UPDATE notes SET body = {value} WHERE {where}")
    test.pending.modify(table, ids)
    test.own_access()
    test.connection_end()


def op_raw_delete(test: Test) -> None:
    table, alive = _seed_target(test, deleting=True)
    if not alive:
        op_raw_insert(test)
        return
    row = test.rng.choice(alive)
    test.execute(f"DELETE FROM {table} WHERE id = {row}")
    test.pending.delete(table, {row})
    test.forget(table, {row})
    test.own_access()
    test.connection_end()


def op_orm_seed(test: Test) -> None:
    """Load a seed row with the session and change or delete it; commit or roll back."""
    deleting = test.rng.random() < 0.4
    table, alive = _seed_target(test, deleting)
    if not alive:
        op_orm_commit(test)
        return
    row = test.rng.choice(alive)
    model = {"users": "User", "items": "Item", "notes": "Note"}[table]
    aw = test.aw
    test.emit(f"obj = {aw}s.get({model}, {row})")
    if deleting:
        test.emit(f"{aw}s.delete(obj)")
        test.pending.delete(table, {row})
        test.forget(table, {row})
    else:
        column = {"users": "name", "items": "title", "notes": "body"}[table]
        test.emit(f"obj.{column} = {test.token()!r}")
        test.pending.modify(table, {row})
    test.own_access()
    test.session_end(test.rng.random() < 0.7)


def op_bulk(test: Test) -> None:
    """executemany of 50-500 rows, on the connection or through the session."""
    count = test.rng.randint(50, 500)
    token = test.token()
    rows = f'[{{"kind": "bulk", "payload": "{token}r" + str(i)}} for i in range({count})]'
    test.own_access()
    test.pending.insert("events", count)
    if test.rng.random() < 0.5:
        test.emit(f"{test.aw}c.execute(insert(Event), {rows})")
        test.connection_end()
    else:
        test.emit(f"{test.aw}s.execute(insert(Event), {rows})")
        test.session_end(test.rng.random() < 0.7)


def op_sequence(test: Test) -> None:
    count = test.rng.randint(1, 3)
    if test.sqlite:
        tickets = ", ".join(f"Ticket(note={test.token()!r})" for _ in range(count))
        test.emit(f"s.add_all([{tickets}])", f"{test.aw}s.flush()")
        test.emit(f"assert ({test.aw}s.scalar(text('SELECT last_insert_rowid()'))) > 0")
        test.own_access()
        test.pending.insert("tickets", count)
        test.session_end(test.rng.random() < 0.7)
        return
    test.emit(f"assert ({test.aw}c.scalar(text(\"SELECT nextval('ticket_seq')\"))) > 0")
    rows = ", ".join(f"(nextval('ticket_seq'), {_sql_text(test.token())})" for _ in range(count))
    test.execute(f"INSERT INTO tickets (number, note) VALUES {rows}")
    test.own_access()
    test.pending.insert("tickets", count)
    test.connection_end()


def op_ddl(test: Test) -> None:
    """CREATE TABLE on the test's connection; ALTER TABLE of a model table where undone."""
    name = f"scratch_{test.index}_{test.counter}"
    test.counter += 1
    rows = test.rng.randint(0, 3)
    test.execute(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, v VARCHAR(20))")
    if test.rng.random() < 0.5:
        test.execute(f"ALTER TABLE {name} ADD COLUMN w INTEGER")
    if rows:
        values = ", ".join(f"({i + 1}, {_sql_text(test.token())})" for i in range(rows))
        test.execute(f"INSERT INTO {name} (id, v) VALUES {values}")
    if test.semantics.ddl_on_seed_tables and test.rng.random() < 0.5:
        column = f"extra_{test.index}_{test.counter}"
        test.execute(f"ALTER TABLE notes ADD COLUMN {column} INTEGER")
        test.execute(f"UPDATE notes SET {column} = 1")
        test.altered = True
        test.pending.modify("notes", set(range(1, len(SEED_NOTES) + 1)))
    test.pending.created[name] = rows
    test.own_access()
    test.connection_end()


def op_session_state(test: Test) -> None:
    """Session state a rollback does not undo (and some that it does)."""
    kinds = (
        ["recursive_triggers", "reverse_unordered_selects"]
        if test.sqlite
        else ["advisory", "advisory_xact", "prepare", "work_mem", "temp", "listen", "cursor"]
    )
    if test.sqlite and not test.semantics.holds_transaction:
        kinds.append("temp")
    chosen = test.rng.sample(kinds, test.rng.randint(1, min(3, len(kinds))))
    for kind in chosen:
        if kind in test.used_state and kind not in ("advisory", "advisory_xact", "work_mem"):
            continue
        test.used_state.add(kind)
        if kind in ("recursive_triggers", "reverse_unordered_selects"):
            test.execute(f"PRAGMA {kind} = 1")
        elif kind == "temp":
            test.execute("CREATE TEMP TABLE rel_temp (x INTEGER)")
        elif kind == "advisory":
            test.execute(f"SELECT pg_advisory_lock({test.rng.randint(1, 50)})")
        elif kind == "advisory_xact":
            test.execute(f"SELECT pg_advisory_xact_lock({test.rng.randint(51, 100)})")
        elif kind == "prepare":
            test.execute("PREPARE rel_prepared AS SELECT 1")
        elif kind == "work_mem":
            test.execute(f"SET work_mem = '{test.rng.randint(5, 64)}MB'")
        elif kind == "listen":
            test.execute("LISTEN rel_channel")
        elif kind == "cursor":
            test.execute("DECLARE rel_cursor CURSOR WITH HOLD FOR SELECT 1")
    test.connection_end()


def op_query_only(test: Test) -> None:
    """SQLite: PRAGMA query_only = 1, the last thing the test does on its connection."""
    test.execute("PRAGMA query_only = 1")
    test.read_only = True
    test.connection_end()


def op_breach(test: Test) -> None:
    """Commit the test's connection itself: the outer transaction ends for real."""
    test.emit(f"{test.aw}c.commit()")
    test.committed.merge(test.root)
    test.root = Effects()
    test.outcome = "breach"


def op_unfinished(test: Test) -> None:
    """End the test with uncommitted work on the session and the connection, maybe raising."""
    made, _ = _new_rows(test, test.rng.randint(1, 3))
    test.emit(f"s.add_all([{', '.join(made)}])", f"{test.aw}s.flush()")
    if test.rng.random() < 0.5:
        rows = [(test.token() + "@u", "unfinished", 0)]
        test.execute(f"INSERT INTO users (email, name, score) VALUES {_values(rows)}")
    if test.rng.random() < 0.5:
        test.emit('raise RuntimeError("the test fails with its work in progress")')
        test.outcome = "failed"


def op_read(test: Test) -> None:
    table = test.rng.choice(["User", "Item", "Tag", "Event"])
    if test.rng.random() < 0.5:
        test.emit(f"assert ({test.aw}s.scalar(select(func.count()).select_from({table}))) >= 0")
        test.own_access()
        test.session_end(test.rng.random() < 0.5)
    else:
        test.emit(f"assert ({test.aw}c.scalar(select(func.count()).select_from({table}))) >= 0")
        test.own_access()
        test.connection_end()


def _other_statements(test: Test) -> tuple[list[str], Effects]:
    """Statements another connection commits: never on rows or tables the test locks."""
    effects = Effects()
    statements = []
    rows: list[tuple[object, ...]]
    for _ in range(test.rng.randint(1, 3)):
        kind = test.rng.choice(["users", "items", "events", "tag_insert", "tag_update", "tag_del"])
        # Seed tags still there: SQLite gives a deleted row's id (the largest) to the next
        # insert, so an id once deleted may name another row later in the test.
        alive = test.alive("tags", range(1, len(SEED_TAGS) + 1))
        if kind in ("tag_update", "tag_del") and not alive:
            kind = "tag_insert"
        if kind == "users":
            rows = [(test.token() + "@o", "other", 1)]
            statements.append(f"INSERT INTO users (email, name, score) VALUES {_values(rows)}")
            effects.insert("users", 1)
        elif kind == "items":
            rows = [(test.rng.choice([1, 2, 3]), test.token(), 1)]
            statements.append(f"INSERT INTO items (owner_id, title, qty) VALUES {_values(rows)}")
            effects.insert("items", 1)
        elif kind == "events":
            count = test.rng.randint(1, 5)
            rows = [("other", test.token()) for _ in range(count)]
            statements.append(f"INSERT INTO events (kind, payload) VALUES {_values(rows)}")
            effects.insert("events", count)
        elif kind == "tag_insert":
            statements.append(f"INSERT INTO tags (label) VALUES ({_sql_text(test.token())})")
            effects.insert("tags", 1)
        elif kind == "tag_update":
            row = test.rng.choice(alive)
            statements.append(f"UPDATE tags SET label = {_sql_text(test.token())} WHERE id = {row}")
            effects.modify("tags", {row})
        else:
            row = test.rng.choice(alive)
            statements.append(f"DELETE FROM tags WHERE id = {row}")
            effects.delete("tags", {row})
            test.forget("tags", {row})
    return statements, effects


def _other(test: Test, threaded: bool) -> None:
    statements, effects = _other_statements(test)
    url = "alchemy_database.url"
    locked = test.sqlite and test.semantics.holds_transaction and test.touched
    if threaded:
        timeout = ", timeout=0.05" if locked else ""
        test.emit(f"error = thread_write({url}, {statements!r}{timeout})")
        if locked:
            test.emit("assert isinstance(error, OperationalError) and LOCKED in str(error), error")
        else:
            test.emit("assert error is None, error")
    elif locked:
        test.emit(
            "with pytest.raises(OperationalError, match=LOCKED):",
            f"    other_write({url}, {statements!r}, timeout=0.05)",
        )
    else:
        test.emit(f"other_write({url}, {statements!r})")
    if not locked:
        test.committed.merge(effects)


def op_other_engine(test: Test) -> None:
    _other(test, threaded=False)


def op_thread(test: Test) -> None:
    _other(test, threaded=True)


Operation = Callable[[Test], None]
OPERATIONS: dict[str, tuple[Operation, int]] = {
    "orm_commit": (op_orm_commit, 8),
    "orm_rollback": (op_orm_rollback, 5),
    "nested": (op_nested, 5),
    "integrity_error": (op_integrity_error, 4),
    "raw_insert": (op_raw_insert, 6),
    "raw_update": (op_raw_update, 5),
    "raw_delete": (op_raw_delete, 4),
    "orm_seed": (op_orm_seed, 6),
    "bulk": (op_bulk, 3),
    "sequence": (op_sequence, 3),
    "ddl": (op_ddl, 3),
    "session_state": (op_session_state, 4),
    "read": (op_read, 4),
    "other_engine": (op_other_engine, 4),
    "thread": (op_thread, 3),
}
OTHER = ("other_engine", "thread")


def _choose(test: Test) -> list[str]:
    names = list(OPERATIONS)
    weights = [OPERATIONS[name][1] for name in names]
    chosen = test.rng.choices(names, weights, k=test.rng.randint(1, 5))
    if test.sqlite and test.semantics.holds_transaction and test.rng.random() < 0.5:
        # Writes of other connections first, while they can still commit.
        chosen.sort(key=lambda name: name not in OTHER)
    return chosen


def _test_source(test: Test, name: str, chosen: list[str], loop: str | None) -> str:
    for operation in chosen:
        test.emit(f"# {operation}")
        OPERATIONS[operation][0](test)
        test.operations.append(operation)
    last = test.rng.random()
    if last < 0.06 and test.semantics.holds_transaction and not test.altered:
        final: Operation | None = op_breach
    elif last < 0.14:
        final = op_unfinished if not test.read_only else None
    elif last < 0.22 and test.sqlite:
        final = op_query_only
    else:
        final = None
    if final is not None:
        operation = final.__name__.removeprefix("op_")
        test.emit(f"# {operation}")
        final(test)
        test.operations.append(operation)
    body = textwrap.indent("\n".join(test.lines), "    ")
    if test.mode == "async":
        marker = "@pytest.mark.asyncio" + (f"(loop_scope={loop!r})" if loop else "")
        return (
            f"{marker}\n"
            f"async def {name}(request, alchemy_async_connection, alchemy_async_session, "
            "alchemy_database):\n"
            "    c, s = alchemy_async_connection, alchemy_async_session\n"
            "    await c.run_sync(start_check, request.node.nodeid)\n"
            f"{body}\n"
        )
    return (
        f"def {name}(request, alchemy_connection, alchemy_session, alchemy_database):\n"
        "    c, s = alchemy_connection, alchemy_session\n"
        "    start_check(c, request.node.nodeid)\n"
        f"{body}\n"
    )


MODULE_HEADER = '''\
"""Generated by tests/reliability/generator.py: seed {seed}, {strategy}, {backend}, {mode}."""

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from reliability_checks import start_check
from models import Event, Item, Note, Tag, Ticket, User
from reliability_helpers import LOCKED, other_write, thread_write

'''

INI = """\
[pytest]
pythonpath = .
alchemy_metadata = models:Base
alchemy_isolation = {strategy}
alchemy_seed = seed_rows:init_db
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
asyncio_default_test_loop_scope = function
"""


def generate(seed: int, tests: int, strategy: str, backend: str, mode: str) -> Generated:
    """A project of ``tests`` random tests for one strategy, backend and mode."""
    if strategy not in SEMANTICS:
        raise KeyError(
            f"the reliability generator has no model of the strategy {strategy!r}: add what it "
            "undoes to SEMANTICS in tests/reliability/generator.py"
        )
    if backend not in BACKENDS or mode not in MODES:
        raise ValueError(f"unknown backend {backend!r} or mode {mode!r}")
    rng = random.Random(f"{seed}-{strategy}-{backend}-{mode}")
    semantics = SEMANTICS[strategy]
    sources = [MODULE_HEADER.format(seed=seed, strategy=strategy, backend=backend, mode=mode)]
    generated: list[GeneratedTest] = []
    width = len(str(tests))
    for index in range(tests):
        name = f"test_{index:0{width}d}"
        test = Test(index, random.Random(rng.getrandbits(64)), semantics, backend, mode)
        chosen = _choose(test)
        loop = None
        if mode == "async" and test.rng.random() < 0.5:
            loop = "module"  # a pooled connection, reused by the next module-loop test
        sources.append(_test_source(test, name, chosen, loop))
        leaked = {} if semantics.cleans_up else test.committed.leaked()
        expected = test.outcome
        if leaked and expected in ("pass", "failed"):
            expected = "leak" if expected == "pass" else "failed+leak"
        if expected == "breach" and not leaked:
            expected = "pass"  # a commit that left nothing behind is harmless
        generated.append(
            GeneratedTest(
                name=name,
                nodeid=f"{MODULE}::{name}",
                expected=expected,
                leaked=leaked,
                operations=test.operations,
            )
        )
    seed_rows = "def init_db(connection):\n" + "".join(
        f"    connection.exec_driver_sql({statement!r})\n" for statement in INIT_SQL
    )
    checks = (
        CHECKS.replace("${backend!r}", repr(backend))
        .replace("${seed_rows!r}", repr(SEED_ROWS))
        .replace("${log_variable!r}", repr(LOG_VARIABLE))
        .replace("${log_variable}", LOG_VARIABLE)
    )
    foreign_keys = backend == "sqlite" and seed % 2 == 0
    files = {
        "models.py": MODELS.replace("{foreign_keys!r}", repr(foreign_keys)),
        "reliability_helpers.py": HELPERS.format(locked=LOCKED_PHRASE),
        "reliability_checks.py": checks,
        "conftest.py": CONFTEST,
        MODULE: "\n\n".join(sources),
        "seed_rows.py": seed_rows,
        "pytest.ini": INI.format(strategy=strategy),
    }
    return Generated(seed, strategy, backend, mode, files, generated, foreign_keys)
