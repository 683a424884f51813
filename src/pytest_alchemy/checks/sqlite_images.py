"""SQLite rows as the file stores them: each row as the SQL literals of its values.

``quote()`` writes every value in its storage class (integer, real, text, blob,
null) and a real with all its digits, so the image both identifies the stored
row and inserts it again unchanged. SQLite cannot say which table a commit
touched, so every look that digests digests every table it may.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sqlalchemy.engine import Connection

from ..leaks import ROW_SNAPSHOT_LIMIT, Digests, Measure, RowImages
from ..tables import TableRef

INSERT_BATCH = 200
"""Rows per INSERT when putting seed rows back."""


class SQLiteImages(RowImages):
    def _columns(
        self, connection: Connection, names: Sequence[TableRef]
    ) -> dict[TableRef, list[str]]:
        wanted = {name.name: name for name in names}
        found: dict[TableRef, list[str]] = {name: [] for name in names}
        rows = connection.exec_driver_sql(
            "SELECT m.name, p.name FROM sqlite_master AS m, pragma_table_info(m.name) AS p "
            "WHERE m.type = 'table' ORDER BY m.name, p.cid"
        )
        for table, column in rows:
            if table in wanted:
                found[wanted[table]].append(str(column))
        return found

    @staticmethod
    def _image(connection: Connection, columns: Sequence[str]) -> str:
        preparer = connection.dialect.identifier_preparer
        return " || ',' || ".join(f"quote({preparer.quote(column)})" for column in columns) or "''"

    def measure(
        self, connection: Connection, names: Sequence[TableRef], *, digests: Digests
    ) -> dict[TableRef, Measure]:
        columns = self._columns(connection, names) if digests != "none" else {}
        selects = []
        for index, name in enumerate(names):
            table = name.quoted(connection.dialect)
            count = f"(SELECT count(*) FROM {table})"
            digest = "NULL"
            if digests != "none":
                image = self._image(connection, columns[name])
                digest = (
                    f"CASE WHEN {count} <= {ROW_SNAPSHOT_LIMIT} THEN (SELECT group_concat(i, "
                    f"char(10)) FROM (SELECT {image} AS i FROM {table} ORDER BY 1)) END"
                )
            selects.append(f"SELECT {index}, {count}, {digest}")
        found = {}
        for index, count, joined in connection.exec_driver_sql(" UNION ALL ".join(selects)):
            hashed: str | None = None
            if joined is not None or (digests != "none" and not count):
                hashed = hashlib.sha1(str(joined or "").encode()).hexdigest()
            found[names[int(index)]] = Measure(int(count), hashed)
        return found

    def rows(self, connection: Connection, name: TableRef) -> list[tuple[str, str]]:
        image = self._image(connection, self._columns(connection, [name])[name])
        sql = f"SELECT {image} FROM {name.quoted(connection.dialect)}"
        return [(str(row), str(row)) for (row,) in connection.exec_driver_sql(sql)]

    def restore(self, connection: Connection, name: TableRef, images: Sequence[str]) -> None:
        preparer = connection.dialect.identifier_preparer
        columns = ", ".join(preparer.quote(c) for c in self._columns(connection, [name])[name])
        table = name.quoted(connection.dialect)
        for start in range(0, len(images), INSERT_BATCH):
            values = ", ".join(f"({image})" for image in images[start : start + INSERT_BATCH])
            connection.exec_driver_sql(f"INSERT INTO {table} ({columns}) VALUES {values}")
