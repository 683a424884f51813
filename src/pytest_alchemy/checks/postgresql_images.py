"""PostgreSQL rows as the server stores them: hashes of their binary form, digests
per table, and text images to put them back.

A row's hash is the md5 of ``record_send``, the value's binary wire form, which
does not depend on the session's ``TimeZone``, ``DateStyle`` or
``extra_float_digits``, nor on the driver that asks. Its image is the row's text
form, which the server reads back into the same stored values. Which tables a
commit can have touched is told by the rows' ``xmin``: a table none of whose
rows was written by a transaction committed since the last probe, and whose
row count did not move, is unchanged, and is not digested.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from ..leaks import ROW_SNAPSHOT_LIMIT, Digests, Measure, RowImages
from ..tables import TableRef
from .postgresql_ddl import literal

ROW = "pytest_alchemy_row"
"""The alias a whole row goes by: a column of the same name would win over a shorter one."""
XID_WRAP = 2**32
"""Row ``xmin`` values are 32-bit transaction ids; the probe counts in 64 bits."""

TABLES = (
    "SELECT nullif(schemaname, current_schema()), tablename FROM pg_tables "
    "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') "
    "ORDER BY schemaname, tablename"
)
"""The user tables of the database, the default schema's with no schema named."""

UNSENDABLE = (
    "SELECT DISTINCT nullif(n.nspname, current_schema()), c.relname FROM pg_attribute a "
    "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
    "JOIN pg_type t ON t.oid = a.atttypid "
    "WHERE a.attnum > 0 AND NOT a.attisdropped AND t.typsend::oid = 0 "
    "AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
)
"""Tables with a column whose type has no binary form: hashed by their text form."""


def _committed_since(start: int | str | None, window: int) -> str:
    """A one-row query of the 32-bit ids committed since ``start`` (NULL: unknown; a
    string: the parameter that holds it, such as ``$1::text``)."""
    if start is None:
        return "SELECT NULL::xid[] AS ids"
    return (
        f"SELECT CASE WHEN b.hi - b.lo > {int(window)} THEN NULL ELSE ARRAY("
        f"SELECT mod(g, {XID_WRAP})::text::xid FROM generate_series(b.lo, b.hi - 1) AS g "
        "WHERE pg_xact_status(g::text::xid8) = 'committed') END AS ids "
        f"FROM (SELECT {start}::bigint AS lo, "
        "pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS hi) AS b"
    )


def _measured(names: Sequence[TableRef], rows: Sequence[Sequence[Any]]) -> dict[TableRef, Measure]:
    return {
        names[int(index)]: Measure(int(count), None if digest is None else str(digest))
        for index, count, digest in rows
    }


class PostgreSQLImages(RowImages):
    def __init__(
        self,
        window_start: Callable[[], int | None],
        window: int,
        run: Callable[[Connection, str, Sequence[str]], list[tuple[Any, ...]]],
    ) -> None:
        self._window_start = window_start
        """Where the last probe that saw commits started counting (None: unknown)."""
        self._window = window
        self._run = run
        """Runs a statement on the driver's connection in autocommit mode, planned once
        per connection, with its text parameters: its rows."""
        self._text_only: set[TableRef] | None = None
        self._columns: dict[TableRef, list[str]] = {}

    def _hash(self, connection: Connection, name: TableRef) -> str:
        if self._text_only is None:
            rows = connection.exec_driver_sql(UNSENDABLE).all()
            self._text_only = {TableRef(schema, table) for schema, table in rows}
        form = f"{ROW}::text" if name in self._text_only else f"record_send({ROW})"
        return f"md5({form})"

    def measure(
        self,
        connection: Connection,
        names: Sequence[TableRef],
        *,
        digests: Digests,
        expected: Mapping[TableRef, int] | None = None,
    ) -> dict[TableRef, Measure]:
        start = self._window_start() if digests == "touched" else None
        sql = self._measure_sql(connection, names, digests, start, expected)
        rows = connection.exec_driver_sql(sql).all()
        return _measured(names, rows)

    def look(
        self,
        connection: Connection,
        names: Sequence[TableRef],
        *,
        digests: Digests,
        expected: Mapping[TableRef, int] | None = None,
    ) -> tuple[list[TableRef], dict[TableRef, Measure]] | None:
        # One statement, outside any transaction: no BEGIN and ROLLBACK around it.
        if self._text_only is None or connection.in_transaction():
            return None
        start = self._window_start() if digests == "touched" else None
        parameters = [] if start is None else [str(int(start))]
        # The window's start is the statement's parameter: planned once, run with each.
        window = None if start is None else "$1::text"
        sql = self._measure_sql(connection, names, digests, window, expected) + (
            " UNION ALL SELECT -1, 0, (SELECT json_agg(json_build_array(s, t))::text "
            f"FROM ({TABLES}) AS listed(s, t)) FROM c"
        )
        try:
            rows = self._run(connection, sql, parameters)
        except DBAPIError as error:
            if error.connection_invalidated:
                raise
            return None  # a table of the baseline is gone: the caller lists and measures
        listed = next(row[2] for row in rows if int(row[0]) < 0)
        tables = [TableRef(schema, table) for schema, table in json.loads(listed or "[]")]
        return tables, _measured(names, [row for row in rows if int(row[0]) >= 0])

    def _measure_sql(
        self,
        connection: Connection,
        names: Sequence[TableRef],
        digests: Digests,
        start: int | str | None,
        expected: Mapping[TableRef, int] | None = None,
    ) -> str:
        """The statement measuring ``names``, digesting those that commits since
        ``start`` (see :func:`_committed_since`) can have touched and, given the
        baseline's counts ``expected``, whose count alone cannot tell: the baseline's,
        and not 0."""
        dialect = connection.dialect
        selects = []
        for index, name in enumerate(names):
            table = name.quoted(dialect)
            digest = (
                "(SELECT md5(coalesce(string_agg(h, '' ORDER BY h COLLATE \"C\"), '')) "
                f"FROM (SELECT {self._hash(connection, name)} AS h FROM {table} AS {ROW}) AS s)"
            )
            if digests == "none":
                digest = "NULL::text"
            elif digests == "touched":
                wanted = expected.get(name) if expected is not None else None
                condition = (
                    f"c.ids IS NULL OR EXISTS (SELECT 1 FROM {table} WHERE xmin = ANY(c.ids))"
                )
                if wanted is not None:
                    condition = f"(SELECT count(*) FROM {table}) = {int(wanted)} AND ({condition})"
                digest = "NULL::text" if wanted == 0 else f"CASE WHEN {condition} THEN {digest} END"
            selects.append(f"SELECT {index}, (SELECT count(*) FROM {table}), {digest} FROM c")
        if not selects:
            selects.append("SELECT -2, 0, NULL::text FROM c WHERE false")
        return f"WITH c AS ({_committed_since(start, self._window)}) " + " UNION ALL ".join(selects)

    def rows(self, connection: Connection, name: TableRef) -> list[tuple[str, str]]:
        table = name.quoted(connection.dialect)
        sql = f"SELECT {self._hash(connection, name)}, {ROW}::text FROM {table} AS {ROW}"
        return [(str(hashed), str(image)) for hashed, image in connection.exec_driver_sql(sql)]

    def restore(self, connection: Connection, name: TableRef, images: Sequence[str]) -> None:
        statement = text(self._insert(connection, name, ":images")).bindparams(bindparam("images"))
        for start in range(0, len(images), ROW_SNAPSHOT_LIMIT):
            connection.execute(
                statement, {"images": list(images[start : start + ROW_SNAPSHOT_LIMIT])}
            )

    def restore_sql(self, connection: Connection, name: TableRef, images: Sequence[str]) -> str:
        """The one statement :meth:`restore` sends per batch, with ``images`` written in."""
        rows = ", ".join(literal(image) for image in images)
        return self._insert(connection, name, f"ARRAY[{rows}]")

    def _insert(self, connection: Connection, name: TableRef, images: str) -> str:
        """``INSERT`` of the rows whose text images the SQL expression ``images`` holds."""
        preparer = connection.dialect.identifier_preparer
        table = name.quoted(connection.dialect)
        columns = [preparer.quote(column) for column in self._insertable(connection, name)]
        picked = ", ".join(f"(s.r).{column}" for column in columns)
        return (
            f"INSERT INTO {table} ({', '.join(columns)}) OVERRIDING SYSTEM VALUE SELECT {picked} "
            f"FROM (SELECT CAST(x AS {table}) AS r FROM unnest(CAST({images} AS text[])) AS x) AS s"
        )

    def _insertable(self, connection: Connection, name: TableRef) -> list[str]:
        """The table's columns that take a value on insert (generated ones do not)."""
        found = self._columns.get(name)
        if found is None:
            rows: Any = connection.execute(
                text(
                    "SELECT attname FROM pg_attribute "
                    "WHERE attrelid = CAST(:table AS regclass) AND attnum > 0 "
                    "AND NOT attisdropped AND attgenerated = '' ORDER BY attnum"
                ),
                {"table": name.quoted(connection.dialect)},
            ).all()
            found = self._columns[name] = [str(column) for (column,) in rows]
        return found
