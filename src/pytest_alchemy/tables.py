"""Table names as values: a schema (None: the connection's default) and a name.

Backends list the tables of a test database as :class:`TableRef` values; the
dialect quotes them where SQL needs them. So nothing outside a backend assumes
a quoting character or the name of the default schema (``public`` on
PostgreSQL, ``main`` on SQLite, the database itself on MySQL).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Dialect


@dataclass(frozen=True)
class TableRef:
    schema: str | None
    """The table's schema, or None for the default schema of the connection."""
    name: str

    def quoted(self, dialect: Dialect) -> str:
        """The table as ``dialect`` writes it in SQL."""
        preparer = dialect.identifier_preparer
        table = preparer.quote(self.name)
        return table if self.schema is None else f"{preparer.quote_schema(self.schema)}.{table}"

    @property
    def shown(self) -> str:
        """The table as users write it: unquoted, without the default schema."""
        return self.name if self.schema is None else f"{self.schema}.{self.name}"

    def __str__(self) -> str:
        return self.shown

    def sort_key(self) -> tuple[str, str]:
        """Tables of the default schema first, then by schema and name."""
        return (self.schema or "", self.name)
