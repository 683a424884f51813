"""The leak check: is the database back at its baseline after a test?

The baseline is taken once, after the schema is built and seed data loaded:
every table, its row count and, for tables that hold rows then, the rows
themselves. After each test the backend's probe says in one cheap query
whether anything committed behind the test's back; only then does the full
comparison run. It catches inserted, updated and deleted rows (a row count
alone misses an update or a delete-and-insert of a seed row) and tables
created or dropped by another connection.

What leaked is put back: tables emptied (triggers not fired where the backend
allows), seed rows re-inserted, tables created by the test dropped. So later
tests start clean even when the guilty test failed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import MetaData, Table
from sqlalchemy.engine import Connection

from .tables import TableRef

ROW_SNAPSHOT_LIMIT = 10_000
"""Tables with more seed rows than this are compared by count only."""


def _key(row: Sequence[Any]) -> tuple[str, ...]:
    return tuple(repr(value) for value in row)


@dataclass
class TableBaseline:
    name: TableRef
    count: int
    rows: list[tuple[Any, ...]] | None = None
    """The seed rows, when the table held any (None when too many to keep)."""
    keys: Counter[tuple[str, ...]] = field(default_factory=Counter)


@dataclass
class Baseline:
    tables: dict[TableRef, TableBaseline]
    order: list[TableRef]
    """Table names in an order that respects foreign keys (parents first)."""
    reflected: MetaData = field(default_factory=MetaData, repr=False)
    """Tables reflected for re-inserting seed rows, kept: reflecting costs a dozen queries."""

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
        return f"{self.shown} ({', '.join(parts)})"


def _counts(connection: Connection, names: Sequence[TableRef]) -> dict[TableRef, int]:
    if not names:
        return {}
    dialect = connection.dialect
    sql = " UNION ALL ".join(
        f"SELECT {index} AS i, count(*) AS n FROM {name.quoted(dialect)}"
        for index, name in enumerate(names)
    )
    rows = connection.exec_driver_sql(sql).all()
    return {names[int(row[0])]: int(row[1]) for row in rows}


def _rows(connection: Connection, name: TableRef) -> list[tuple[Any, ...]]:
    sql = f"SELECT * FROM {name.quoted(connection.dialect)}"
    return [tuple(row) for row in connection.exec_driver_sql(sql).all()]


def capture(connection: Connection, names: Sequence[TableRef]) -> Baseline:
    counts = _counts(connection, names)
    tables: dict[TableRef, TableBaseline] = {}
    for name in names:
        baseline = TableBaseline(name=name, count=counts[name])
        if 0 < baseline.count <= ROW_SNAPSHOT_LIMIT:
            baseline.rows = _rows(connection, name)
            baseline.keys = Counter(_key(row) for row in baseline.rows)
        tables[name] = baseline
    return Baseline(tables=tables, order=_dependency_order(connection, names))


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
    connection: Connection, baseline: Baseline, current_names: Sequence[TableRef]
) -> list[TableLeak]:
    """What differs from the baseline now, table by table."""
    leaks: list[TableLeak] = []
    known = set(baseline.tables)
    present = [name for name in current_names if name in known]
    created = [name for name in current_names if name not in known]
    for name in sorted(known - set(current_names), key=TableRef.sort_key):
        leaks.append(TableLeak(name, baseline.tables[name].count, 0, dropped=True))
    counts = _counts(connection, present + created)
    for name in created:
        leaks.append(TableLeak(name, 0, counts[name], created=True))
    for name in present:
        table = baseline.tables[name]
        after = counts[name]
        if table.count == 0:
            if after:
                leaks.append(TableLeak(name, 0, after, added=after))
            continue
        if table.rows is None:
            if after != table.count:
                leaks.append(TableLeak(name, table.count, after))
            continue
        now = Counter(_key(row) for row in _rows(connection, name)) if after else Counter()
        added = sum((now - table.keys).values())
        removed = sum((table.keys - now).values())
        if added or removed:
            leaks.append(TableLeak(name, table.count, after, added=added, removed=removed))
    return leaks


def reinsert(
    connection: Connection, baseline: Baseline, names: Sequence[TableRef]
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
        if table_baseline.rows is None:
            missing.append(name)
            continue
        table = _reflect(connection, baseline.reflected, name)
        columns = [column.name for column in table.columns]
        connection.execute(
            table.insert(), [dict(zip(columns, row, strict=True)) for row in table_baseline.rows]
        )
    return missing


def _reflect(connection: Connection, metadata: MetaData, name: TableRef) -> Table:
    """The table ``name``, reflected once per baseline."""
    key = f"{name.schema}.{name.name}" if name.schema else name.name
    found = metadata.tables.get(key)
    if found is not None:
        return found
    return Table(name.name, metadata, schema=name.schema, autoload_with=connection)
