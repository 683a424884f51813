"""A test database's schema as DDL read from the database itself, for the ``recreate``
strategy, and the statements that put the database back at its baseline from it.

The snapshot is read once per run from the database's own catalog (``sqlite_master``
on SQLite, the system catalogs on PostgreSQL), never from SQLAlchemy metadata: the
schema may come from Alembic migrations or a hook. Each backend's module
(``sqlite_ddl``, ``postgresql_ddl``) says what it covers. Tables named in
``alchemy_keep_tables`` are not part of it: they are never dropped.

Putting the database back is one batch: drop every table (and view, and sequence
on PostgreSQL) but the kept ones, :attr:`SchemaSnapshot.build` (tables, their
constraints but foreign keys, indexes), the rows the baseline holds,
:attr:`SchemaSnapshot.finish` (foreign keys, views, triggers...), sequences.
Triggers and foreign keys are made after the rows, so none fires or checks while
the rows go back, in any order, cycles included.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from ..restore import kept
from ..tables import TableRef

__all__ = ["Recreated", "SchemaSnapshot", "Step", "kept", "steps"]


@dataclass(frozen=True)
class Step:
    """One DDL statement of a snapshot."""

    sql: str
    needs: TableRef | None = None
    """A kept table that must exist for the statement to run (its foreign key to a
    recreated table, which dropping that table removed); None: always run."""


@dataclass(frozen=True)
class SchemaSnapshot:
    """What rebuilding the test database's tables takes, read from the database."""

    tables: tuple[TableRef, ...]
    """The tables the snapshot creates, in the order it creates them."""
    build: tuple[Step, ...]
    """Before the rows: tables with their constraints but foreign keys, indexes."""
    finish: tuple[Step, ...]
    """After the rows: foreign keys, views, triggers and the rest."""
    columns: Mapping[TableRef, tuple[str, ...]]
    """Per table, its columns that take a value on insert, quoted, in the order of
    the baseline's row images."""
    names: Mapping[TableRef, str] = field(default_factory=dict)
    """Per table, its name as the statements write it."""
    row_columns: Mapping[TableRef, tuple[str, ...]] = field(default_factory=dict)
    """Per table, all its columns, quoted, generated ones included (PostgreSQL)."""
    children: Mapping[TableRef, tuple[TableRef, ...]] = field(default_factory=dict)
    """Per table, the tables that inherit from it (``INHERITS``; PostgreSQL)."""
    keep: tuple[str, ...] = ()
    """The kept tables it was taken without (``alchemy_keep_tables``)."""
    sequences: tuple[str, ...] = ()
    """The sequences it creates, named as ``SessionChecks.sequence_positions`` names them."""
    schemas: tuple[str, ...] = ()
    """Schemas (quoted) the tables live in, made again when a test dropped one."""
    protected: frozenset[str] = field(default_factory=frozenset)
    """Sequences never dropped: a kept table's default takes its values from them."""


@dataclass
class Recreated:
    """What rebuilding the tables did."""

    tables: list[TableRef] = field(default_factory=list)
    """The tables created again from the snapshot."""
    unrestored: list[TableRef] = field(default_factory=list)
    """Tables whose seed rows could not be put back (too many to keep a copy of)."""
    kept: list[TableRef] = field(default_factory=list)
    """The kept tables there are, left as they were."""


def steps(snapshot_steps: Sequence[Step], present: Collection[TableRef]) -> list[str]:
    """The statements of ``snapshot_steps`` that can run, the kept tables ``present``."""
    return [step.sql for step in snapshot_steps if step.needs is None or step.needs in present]
