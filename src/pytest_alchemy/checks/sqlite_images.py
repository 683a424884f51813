"""SQLite rows as the file stores them: each row as the SQL literals of its values.

``quote()`` writes every value in its storage class (integer, real, text, blob,
null) and a real with all its digits, so the image both identifies the stored
row and inserts it again unchanged. SQLite cannot say which table a commit
touched: a look digests every table whose row count cannot tell on its own
whether it changed (a count other than the baseline's says it did; an empty
table that was empty is unchanged). The tables and their columns are read
again only when the schema changed (SQLite's ``schema_version``), so a test
that wrote a few rows costs one short look.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from ..leaks import ROW_SNAPSHOT_LIMIT, Digests, Measure, RowImages
from ..tables import TableRef

INSERT_BATCH = 200
"""Rows per INSERT when putting seed rows back."""

TABLES = (
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
)
"""The user tables of the main database."""

COLUMNS = (
    "SELECT m.name, p.name FROM sqlite_master AS m, pragma_table_info(m.name) AS p "
    "WHERE m.type = 'table' ORDER BY m.name, p.cid"
)


@dataclass
class _Schema:
    """What one database's schema was at one ``schema_version``."""

    version: int
    tables: list[TableRef] | None = None
    columns: dict[str, list[str]] | None = None


def driver_rows(connection: Connection, sql: str) -> list[tuple[Any, ...]]:
    """``sql``'s rows, from the driver's connection: inside the transaction the
    connection is in, else on its own (no BEGIN and ROLLBACK around it)."""
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql)
        return [tuple(row) for row in cursor.fetchall()]
    finally:
        cursor.close()


class SQLiteImages(RowImages):
    def __init__(self) -> None:
        self._schemas: dict[str, _Schema] = {}
        """Per database file: its schema as last read."""

    def _schema(self, connection: Connection) -> _Schema:
        """The database's schema as cached, read again if its version moved."""
        version = int(driver_rows(connection, "PRAGMA schema_version")[0][0])
        key = connection.engine.url.database or ""
        schema = self._schemas.get(key)
        if schema is None or schema.version != version:
            schema = self._schemas[key] = _Schema(version)
        return schema

    def tables(self, connection: Connection) -> list[TableRef]:
        """The user tables of the database, by name."""
        return self._tables(connection, self._schema(connection))

    def _tables(self, connection: Connection, schema: _Schema) -> list[TableRef]:
        if schema.tables is None:
            rows = driver_rows(connection, TABLES)
            schema.tables = [TableRef(None, str(name)) for (name,) in rows]
        return list(schema.tables)

    def _columns(
        self, connection: Connection, names: Sequence[TableRef], schema: _Schema | None
    ) -> dict[TableRef, list[str]]:
        if schema is None:
            schema = self._schema(connection)
        if schema.columns is None:
            schema.columns = {}
            for table, column in driver_rows(connection, COLUMNS):
                schema.columns.setdefault(str(table), []).append(str(column))
        return {name: list(schema.columns.get(name.name, ())) for name in names}

    @staticmethod
    def _image(connection: Connection, columns: Sequence[str]) -> str:
        preparer = connection.dialect.identifier_preparer
        return " || ',' || ".join(f"quote({preparer.quote(column)})" for column in columns) or "''"

    def look(
        self,
        connection: Connection,
        names: Sequence[TableRef],
        *,
        digests: Digests,
        expected: Mapping[TableRef, int] | None = None,
    ) -> tuple[list[TableRef], dict[TableRef, Measure]] | None:
        schema = self._schema(connection)
        tables = self._tables(connection, schema)
        listed = set(tables)
        present = [name for name in names if name in listed]
        try:
            return tables, self._measure(connection, present, digests, expected, schema)
        except connection.dialect.loaded_dbapi.OperationalError:
            return None  # the schema changed meanwhile: the caller lists and measures

    def measure(
        self,
        connection: Connection,
        names: Sequence[TableRef],
        *,
        digests: Digests,
        expected: Mapping[TableRef, int] | None = None,
    ) -> dict[TableRef, Measure]:
        return self._measure(connection, names, digests, expected, None)

    def _measure(
        self,
        connection: Connection,
        names: Sequence[TableRef],
        digests: Digests,
        expected: Mapping[TableRef, int] | None,
        schema: _Schema | None,
    ) -> dict[TableRef, Measure]:
        if not names:
            return {}
        limits = _digest_limits(names, digests, expected)
        columns: dict[TableRef, list[str]] = {}
        if limits:
            columns = self._columns(connection, list(limits), schema)
        selects = []
        for index, name in enumerate(names):
            table = name.quoted(connection.dialect)
            count = f"(SELECT count(*) FROM {table})"
            digest = "NULL"
            if name in limits:
                image = self._image(connection, columns[name])
                digest = (
                    f"CASE WHEN {count} {limits[name]} THEN (SELECT group_concat(i, char(10)) "
                    f"FROM (SELECT {image} AS i FROM {table} ORDER BY 1)) END"
                )
            selects.append(f"SELECT {index}, {count}, {digest}")
        found = {}
        for index, count, joined in driver_rows(connection, " UNION ALL ".join(selects)):
            name = names[int(index)]
            hashed: str | None = None
            if joined is not None or (name in limits and not count):
                hashed = hashlib.sha1(str(joined or "").encode()).hexdigest()
            found[name] = Measure(int(count), hashed)
        return found

    def rows(self, connection: Connection, name: TableRef) -> list[tuple[str, str]]:
        image = self._image(connection, self._columns(connection, [name], None)[name])
        sql = f"SELECT {image} FROM {name.quoted(connection.dialect)}"
        return [(str(row), str(row)) for (row,) in connection.exec_driver_sql(sql)]

    def restore(self, connection: Connection, name: TableRef, images: Sequence[str]) -> None:
        preparer = connection.dialect.identifier_preparer
        names = self._columns(connection, [name], None)[name]
        columns = ", ".join(preparer.quote(column) for column in names)
        table = name.quoted(connection.dialect)
        for start in range(0, len(images), INSERT_BATCH):
            values = ", ".join(f"({image})" for image in images[start : start + INSERT_BATCH])
            connection.exec_driver_sql(f"INSERT INTO {table} ({columns}) VALUES {values}")


def _digest_limits(
    names: Sequence[TableRef], digests: Digests, expected: Mapping[TableRef, int] | None
) -> dict[TableRef, str]:
    """Per table to digest, the condition on its row count under which it is digested.

    With the baseline's counts ``expected`` (and ``digests="touched"``), only a table
    whose count is what the baseline had, and not 0, needs a digest to tell whether it
    changed: any other count tells by itself.
    """
    if digests == "none":
        return {}
    if digests == "all" or expected is None:
        return dict.fromkeys(names, f"<= {ROW_SNAPSHOT_LIMIT}")
    return {
        name: f"= {expected[name]}"
        for name in names
        if name in expected and 0 < expected[name] <= ROW_SNAPSHOT_LIMIT
    } | {name: f"<= {ROW_SNAPSHOT_LIMIT}" for name in names if name not in expected}
