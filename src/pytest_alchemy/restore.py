"""Putting the test database back at its baseline: what the leak check repairs
after a leak, and what the ``truncate`` strategy does after every test.

One look (row counts, and digests of the tables a commit can have touched)
tells which tables differ from the baseline. Only those are put back, in one
transaction with the user's triggers suspended: tables created since are
dropped, changed ones emptied (on PostgreSQL one ``TRUNCATE … RESTART IDENTITY
CASCADE``), every table left empty that held seed rows gets them again, and the
sequences go back to where the baseline had them, so ids start again alike.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .leaks import Baseline, TableLeak, compare, counts, reinsert
from .tables import TableRef

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from .checks import SessionChecks


@dataclass
class Repair:
    """What differed from the baseline, and what could not be put back."""

    changed: list[TableLeak] = field(default_factory=list)
    """Every table that differed (all put back but the kept ones)."""
    unrestored: list[str] = field(default_factory=list)
    """Tables that could not be put back, each with the reason."""


@dataclass(frozen=True)
class PutBack:
    """What one repair does, in one transaction."""

    created: list[TableRef]
    """Tables made since the baseline: dropped."""
    emptied: list[TableRef]
    """Tables whose rows changed: emptied, then given their seed rows again."""
    sizes: Mapping[TableRef, int]
    """How many rows each changed table holds now."""
    held: list[TableRef]
    """Every table of the baseline still there that is not kept as it is: those that
    emptying the others may have emptied too."""


def put_back(
    connection: Connection, backend: SessionChecks, baseline: Baseline, plan: PutBack
) -> list[TableRef]:
    """Carry out ``plan`` statement by statement, in one transaction with the foreign
    keys and the user's triggers suspended where the backend can (rows of a parent
    table are deleted and put back while its children still point at them). Returns
    the tables whose seed rows were too many to keep."""
    images = backend.images
    with (
        backend.constraints_suspended(connection),
        connection.begin(),
        backend.triggers_suspended(connection),
    ):
        backend.drop_tables(connection, plan.created)
        cascaded = backend.empty_tables(connection, plan.emptied, plan.sizes)
        if cascaded:
            # Emptying cascaded to referencing tables: whatever holds no row now but did
            # at the baseline gets its seed rows back.
            now = counts(connection, images, plan.held)
            refill = [name for name in plan.held if not now[name] and baseline.tables[name].count]
        else:
            held = set(plan.held)
            refill = [name for name in plan.emptied if name in held and baseline.tables[name].count]
        too_big = reinsert(connection, baseline, images, refill)
        backend.restore_sequences(connection, baseline.sequences)
    return too_big


def kept(name: TableRef, keep: Collection[str]) -> bool:
    """Whether ``name`` is one of the ``keep`` tables (written with or without schema)."""
    return name.name in keep or name.shown in keep


def restore_baseline(
    connection: Connection,
    backend: SessionChecks,
    baseline: Baseline,
    *,
    keep: Collection[str] = (),
    detail: bool = True,
    mark: bool = False,
) -> Repair:
    """Put every table that differs from ``baseline`` back, outside any transaction.

    ``keep``: tables that are neither emptied nor refilled; what they hold afterwards
    becomes their baseline. ``detail``: count the rows added and removed per changed
    table (for the leak check's message). ``mark``: afterwards, the backend's probe
    starts counting commits from here even when nothing differed.
    """
    images = backend.images
    looked = images.look(
        connection, list(baseline.tables), digests="touched", expected=baseline.counts()
    )
    if looked is None:
        names, measured = backend.table_names(connection), None
    else:
        names, measured = looked
    repair = Repair(compare(connection, baseline, images, names, measured=measured, detail=detail))
    connection.rollback()
    if not repair.changed:
        if mark:
            backend.start_marker(connection)
        return repair
    changed = [leak for leak in repair.changed if not kept(leak.name, keep)]
    created = [leak.name for leak in changed if leak.created]
    emptied = [leak.name for leak in changed if not (leak.created or leak.dropped)]
    dropped = [leak.name for leak in changed if leak.dropped]
    sizes = {leak.name: leak.after for leak in changed}
    gone = set(created)
    present = [name for name in names if name in baseline.tables and name not in gone]
    held = [name for name in present if not kept(name, keep)]
    with backend.repair_connection(connection) as repairing:
        too_big = backend.put_back(
            repairing, baseline, PutBack(created=created, emptied=emptied, sizes=sizes, held=held)
        )
    # What cannot be put back becomes the new baseline: reported once, by this test.
    baseline.forget(dropped)
    baseline.emptied(too_big)
    keeping = [name for name in present if kept(name, keep)]
    if keeping:
        baseline.recapture(connection, images, keeping)
        connection.rollback()
    repair.unrestored = [f"{name} (too many seed rows to keep)" for name in too_big]
    repair.unrestored += [f"{name} (dropped)" for name in dropped]
    # Past the repair's own commit, which the next probe must not count.
    backend.start_marker(connection)
    return repair
