"""The leak check: is the database back at its baseline after a test?

The baseline is taken once, after the schema is built and seed data loaded:
every table, its row count, a digest of its rows and, for tables that hold
rows then, the rows themselves. Rows are images the database computes (its
own binary or literal form of each stored value), never values decoded by a
driver: a ``timestamptz`` read through asyncpg and through psycopg is the same
stored value, and compares equal.

After each test the backend's probe says in one cheap query whether anything
committed behind the test's back; only then does the comparison run, in one
round trip: per table its row count and, where the backend can tell a commit
touched it, the digest of its rows. Only a table whose count or digest moved
is read row by row, to say what changed. It catches inserted, updated and
deleted rows (a row count alone misses an update or a delete-and-insert of a
seed row) and tables created or dropped by another connection.

What leaked is put back: tables emptied (triggers not fired where the backend
allows), seed rows re-inserted from their images, tables created by the test
dropped. So later tests start clean even when the guilty test failed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy.engine import Connection

from .tables import TableRef

ROW_SNAPSHOT_LIMIT = 10_000
"""Tables with more seed rows than this are compared by count and digest only."""

Digests = Literal["all", "touched", "none"]
"""Which tables a look digests: all, those a recent commit can have touched, none."""


@dataclass(frozen=True)
class Measure:
    """A table as one look found it."""

    count: int
    digest: str | None
    """A digest of all its rows; None when it was not computed (too many rows, or
    no commit since the last look can have touched the table)."""


class RowImages(ABC):
    """How a backend reads a table's rows as the database stores them, and writes
    them back. Rows are ``(hash, image)`` pairs of text the database computed: the
    hash identifies a stored row, the image is what :meth:`restore` inserts again."""

    @abstractmethod
    def measure(
        self,
        connection: Connection,
        names: Sequence[TableRef],
        *,
        digests: Digests,
        expected: Mapping[TableRef, int] | None = None,
    ) -> dict[TableRef, Measure]:
        """Count and, as ``digests`` says, digest of each table, in one round trip.
        Backends that cannot tell which tables a commit touched digest them all.
        ``expected``: the baseline's counts; with ``digests="touched"``, a table whose
        count differs from its own, or is 0 as expected, needs no digest (its count
        tells), and the backend may leave it out."""

    def look(
        self,
        connection: Connection,
        names: Sequence[TableRef],
        *,
        digests: Digests,
        expected: Mapping[TableRef, int] | None = None,
    ) -> tuple[list[TableRef], dict[TableRef, Measure]] | None:
        """The tables there are now and :meth:`measure` of ``names``, in one round trip;
        None where the backend cannot (or not now: a table of ``names`` is gone)."""
        return None

    @abstractmethod
    def rows(self, connection: Connection, name: TableRef) -> list[tuple[str, str]]:
        """The table's rows, as ``(hash, image)`` pairs."""

    @abstractmethod
    def restore(self, connection: Connection, name: TableRef, images: Sequence[str]) -> None:
        """Insert the rows ``images`` (from :meth:`rows`) into the empty table ``name``."""


@dataclass
class TableBaseline:
    name: TableRef
    count: int
    digest: str | None = None
    images: list[str] | None = None
    """The seed rows' images, when the table held any (None when too many to keep)."""
    hashes: Counter[str] = field(default_factory=Counter)


SequencePositions = dict[str, tuple[int | None, int]]
"""Each sequence of a database: its last value (None: never used) and its start."""


@dataclass
class Baseline:
    tables: dict[TableRef, TableBaseline]
    order: list[TableRef]
    """Table names in an order that respects foreign keys (parents first)."""
    sequences: SequencePositions = field(default_factory=dict)
    """Where the database's sequences stood (see ``SessionChecks.sequence_positions``)."""

    def recapture(
        self, connection: Connection, images: RowImages, names: Sequence[TableRef]
    ) -> None:
        """Tables whose rows now are what later tests must find: measured again."""
        if names:
            self.tables.update(_table_baselines(connection, images, names))

    def counts(self) -> dict[TableRef, int]:
        """Each table's row count at the baseline."""
        return {name: table.count for name, table in self.tables.items()}

    def forget(self, names: Sequence[TableRef]) -> None:
        """Tables that are gone for good: no longer part of the baseline."""
        for name in names:
            self.tables.pop(name, None)
        self.order = [name for name in self.order if name in self.tables]

    def emptied(self, names: Sequence[TableRef]) -> None:
        """Tables emptied for good (their seed rows could not be kept): empty is the baseline."""
        for name in names:
            self.tables[name] = TableBaseline(name=name, count=0)


@dataclass(frozen=True)
class TableLeak:
    name: TableRef
    before: int
    after: int
    added: int = 0
    removed: int = 0
    created: bool = False
    dropped: bool = False

    @property
    def shown(self) -> str:
        """The table's name as users write it: unquoted, without the default schema."""
        return self.name.shown

    def describe(self) -> str:
        if self.created:
            return f"{self.shown}: table created ({self.after} rows)"
        if self.dropped:
            return f"{self.shown}: table dropped"
        parts = [f"{self.before} -> {self.after} rows"]
        if self.added and self.removed:
            changed = min(self.added, self.removed)
            if self.added - changed:
                parts.append(f"{self.added - changed} added")
            if self.removed - changed:
                parts.append(f"{self.removed - changed} removed")
            parts.append(f"{changed} changed")
        elif self.added:
            parts.append(f"{self.added} added")
        elif self.removed:
            parts.append(f"{self.removed} removed")
        elif self.before == self.after:
            parts.append("rows changed")
        return f"{self.shown} ({', '.join(parts)})"


def capture(
    connection: Connection,
    images: RowImages,
    names: Sequence[TableRef],
    sequences: SequencePositions | None = None,
) -> Baseline:
    tables = _table_baselines(connection, images, names)
    order = _dependency_order(connection, names)
    return Baseline(tables=tables, order=order, sequences=sequences or {})


def _table_baselines(
    connection: Connection, images: RowImages, names: Sequence[TableRef]
) -> dict[TableRef, TableBaseline]:
    measured = images.measure(connection, names, digests="all")
    tables: dict[TableRef, TableBaseline] = {}
    for name in names:
        found = measured[name]
        baseline = TableBaseline(name=name, count=found.count, digest=found.digest)
        if 0 < baseline.count <= ROW_SNAPSHOT_LIMIT:
            rows = images.rows(connection, name)
            baseline.images = [image for _, image in rows]
            baseline.hashes = Counter(hashed for hashed, _ in rows)
        tables[name] = baseline
    return tables


def _dependency_order(connection: Connection, names: Sequence[TableRef]) -> list[TableRef]:
    """``names`` with parents before children, as far as foreign keys allow."""
    from sqlalchemy import inspect

    inspector = inspect(connection)
    plain = {name.name: name for name in names if name.schema is None}
    ordered: list[TableRef] = []
    try:
        for table, _ in inspector.get_sorted_table_and_fkc_names():
            if table is not None and table in plain:
                ordered.append(plain[table])
    except Exception:  # reflection of exotic schemas: fall back to name order
        return list(names)
    ordered.extend(name for name in names if name not in ordered)
    return ordered


def compare(
    connection: Connection,
    baseline: Baseline,
    images: RowImages,
    current_names: Sequence[TableRef],
    *,
    digests: Digests = "touched",
    measured: Mapping[TableRef, Measure] | None = None,
    detail: bool = True,
) -> list[TableLeak]:
    """What differs from the baseline now, table by table (``measured``: the tables of
    the baseline still there, measured already). Without ``detail`` the rows of a
    changed table are not read to tell how many were added and removed."""
    leaks: list[TableLeak] = []
    known = set(baseline.tables)
    present = [name for name in current_names if name in known]
    created = [name for name in current_names if name not in known]
    for name in sorted(known - set(current_names), key=TableRef.sort_key):
        leaks.append(TableLeak(name, baseline.tables[name].count, 0, dropped=True))
    if measured is None:
        expected = baseline.counts() if digests == "touched" else None
        measured = (
            images.measure(connection, present, digests=digests, expected=expected)
            if present
            else {}
        )
    measured = {name: measured[name] for name in present}
    if created:
        measured.update(images.measure(connection, created, digests="none"))
    for name in created:
        leaks.append(TableLeak(name, 0, measured[name].count, created=True))
    for name in present:
        table = baseline.tables[name]
        now = measured[name]
        if now.count == table.count and None in (now.digest, table.digest):
            continue
        if now.count == table.count and now.digest == table.digest:
            continue
        if not table.count or not now.count:
            added, removed = now.count, table.count
        elif table.images is None or not detail:
            added = removed = 0
        else:
            hashes = Counter(hashed for hashed, _ in images.rows(connection, name))
            added = sum((hashes - table.hashes).values())
            removed = sum((table.hashes - hashes).values())
        leaks.append(TableLeak(name, table.count, now.count, added=added, removed=removed))
    return leaks


def counts(
    connection: Connection, images: RowImages, names: Sequence[TableRef]
) -> dict[TableRef, int]:
    """How many rows each table holds now."""
    if not names:
        return {}
    return {
        name: found.count
        for name, found in images.measure(connection, names, digests="none").items()
    }


def reinsert(
    connection: Connection, baseline: Baseline, images: RowImages, names: Sequence[TableRef]
) -> list[TableRef]:
    """Insert the seed rows of ``names`` (emptied tables) again, parents first.

    Returns the tables whose seed rows could not be restored (too many to keep).
    """
    missing = []
    wanted = set(names)
    for name in baseline.order:
        if name not in wanted:
            continue
        table_baseline = baseline.tables[name]
        if table_baseline.count == 0:
            continue
        if table_baseline.images is None:
            missing.append(name)
            continue
        images.restore(connection, name, table_baseline.images)
    return missing
