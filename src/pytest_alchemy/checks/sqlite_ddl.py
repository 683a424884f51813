"""SQLite: the schema as ``sqlite_master`` keeps it, for the ``recreate`` strategy.

``sqlite_master`` holds the very statement that made each table, index, view and
trigger (as later ``ALTER TABLE`` statements changed it): the snapshot is those
statements, tables first, then indexes; after the rows, views and triggers. Left
out: SQLite's own objects (``sqlite_sequence``, ``sqlite_stat1``, the indexes behind
``UNIQUE`` and ``PRIMARY KEY``, made again with their table), the shadow tables of
virtual tables (made again with the virtual table), and the kept tables with their
indexes and triggers.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from sqlalchemy.engine import Connection

from ..leaks import Baseline
from ..tables import TableRef
from .ddl import Recreated, SchemaSnapshot, Step, kept
from .sqlite_images import INSERT_BATCH

OBJECTS = (
    "SELECT type, name, tbl_name, sql FROM sqlite_master "
    "WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid"
)
"""Every table, index, view and trigger the user made, in the order they were made."""
CURRENT = (
    "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'view') "
    "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid"
)
"""The tables and views there are now."""
COLUMNS = (
    "SELECT m.name, p.name FROM sqlite_master AS m, pragma_table_info(m.name) AS p "
    "WHERE m.type = 'table' ORDER BY m.name, p.cid"
)
"""Each table's columns in the order of the leak check's row images (generated columns,
which take no value on insert, are not listed)."""
SHADOW = "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'shadow'"
"""Tables a virtual table keeps its data in (SQLite 3.37 and later say so)."""

ORDER = {"table": 0, "index": 1, "view": 2, "trigger": 3}


def shadow_tables(connection: Connection) -> set[str]:
    """The shadow tables of the database's virtual tables (none known before SQLite 3.37)."""
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(SHADOW)
        return {str(name) for (name,) in cursor.fetchall()}
    except Exception:  # no pragma_table_list: an older SQLite
        return set()
    finally:
        cursor.close()


def snapshot(connection: Connection, keep: Collection[str]) -> SchemaSnapshot:
    """The schema of the database on ``connection`` but the ``keep`` tables, as DDL."""
    shadows = shadow_tables(connection)
    rows = connection.exec_driver_sql(OBJECTS).all()
    objects = [
        (str(kind), str(name), str(table), str(sql))
        for kind, name, table, sql in rows
        if kind in ORDER and name not in shadows and table not in shadows
    ]
    skipped = {table for _, _, table, _ in objects if kept(TableRef(None, table), keep)}
    objects = [entry for entry in objects if entry[2] not in skipped]
    objects.sort(key=lambda entry: ORDER[entry[0]])  # stable: made-order within a kind
    tables = tuple(TableRef(None, name) for kind, name, _, _ in objects if kind == "table")
    quote = connection.dialect.identifier_preparer.quote
    columns: dict[TableRef, list[str]] = {name: [] for name in tables}
    for table, column in connection.exec_driver_sql(COLUMNS):
        listed = columns.get(TableRef(None, str(table)))
        if listed is not None:
            listed.append(quote(str(column)))
    return SchemaSnapshot(
        tables=tables,
        build=tuple(Step(sql) for kind, _, _, sql in objects if kind in ("table", "index")),
        finish=tuple(Step(sql) for kind, _, _, sql in objects if kind in ("view", "trigger")),
        columns={name: tuple(listed) for name, listed in columns.items()},
        names={name: name.quoted(connection.dialect) for name in tables},
        keep=tuple(keep),
    )


def drops(connection: Connection, snapshot: SchemaSnapshot, recreated: Recreated) -> list[str]:
    """``DROP`` statements for every view and every table but the kept ones, as they
    are now (tables a test made included, shadow tables left to their virtual table);
    the kept tables there are go to ``recreated.kept``."""
    shadows = shadow_tables(connection)
    quote = connection.dialect.identifier_preparer.quote
    views, tables = [], []
    for kind, found in connection.exec_driver_sql(CURRENT):
        name = str(found)
        if name in shadows:
            continue
        table = TableRef(None, name)
        if kind == "view":
            views.append(f"DROP VIEW {quote(name)}")
        elif kept(table, snapshot.keep):
            recreated.kept.append(table)
        else:
            tables.append(f"DROP TABLE {quote(name)}")
    return views + tables


def inserts(
    connection: Connection, snapshot: SchemaSnapshot, baseline: Baseline, recreated: Recreated
) -> list[str]:
    """``INSERT`` statements putting the baseline's rows back into the recreated tables;
    the tables whose rows the baseline could not keep go to ``recreated.unrestored``."""
    statements = []
    for name in baseline.order:
        columns = snapshot.columns.get(name)
        table = baseline.tables.get(name)
        if columns is None or table is None or not table.count:
            continue
        if table.images is None:
            recreated.unrestored.append(name)
            continue
        into = f"INSERT INTO {snapshot.names[name]} ({', '.join(columns)}) VALUES "
        images = table.images
        for start in range(0, len(images), INSERT_BATCH):
            batch = images[start : start + INSERT_BATCH]
            statements.append(into + ", ".join(f"({image})" for image in batch))
    return statements


def recreated_positions(
    positions: Mapping[str, tuple[int | None, int]], keep: Sequence[str]
) -> dict[str, tuple[int | None, int]]:
    """``positions`` (AUTOINCREMENT counters, by table) but those of the kept tables."""
    return {
        name: position
        for name, position in positions.items()
        if not kept(TableRef(None, name), keep)
    }
