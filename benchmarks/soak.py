"""Soak test of isolation: the randomized reliability suite at scale.

Usage::

    .venv/bin/python benchmarks/soak.py [--tests 10000] [--seed N]
                                        [--combination savepoint-postgresql-async|all]
                                        [--chunk 2000] [--jobs 2] [--keep DIR]
                                        [--async-driver asyncpg|psycopg|both]

Runs ``tests/reliability/generator.py`` with ``--tests`` random tests per combination
(strategy x backend x sync/async, the same table as ``tests/reliability``), each test
with its expected outcome, and every test checked out of band after the plugin's
teardown. A combination's tests are split into projects of ``--chunk`` tests, each run
in its own pytest subprocess; chunk ``k`` uses seed ``N + k``, and ``--jobs`` chunks run
at a time. PostgreSQL is a throwaway server started with
``pytest_alchemy.servers.start_server("postgresql")``; async chunks on it use asyncpg or
psycopg's async mode (``--async-driver``; ``both`` alternates from chunk to chunk).
SQLite files go to ``/dev/shm`` where it exists.

Prints totals per combination. On any mismatch it prints, for each failing chunk, the
command that replays it (``--seed`` of the chunk, its size, its combination) and the
failing test ids, and exits with status 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from tests.reliability.generator import combinations, generate  # noqa: E402
from tests.reliability.harness import ASYNC_DRIVERS, Report, postgresql_url, run  # noqa: E402

from pytest_alchemy.isolation import BUILTIN as STRATEGIES  # noqa: E402

COMBINATIONS = ["-".join(combination) for combination in combinations(list(STRATEGIES))]


@dataclass
class Chunk:
    combination: str
    seed: int
    tests: int
    async_driver: str = "asyncpg"
    report: Report | None = None
    database_left: bool = False
    error: str | None = None
    directory: Path | None = None

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and self.report is not None
            and self.report.ok
            and bool(self.report.actual)
            and not self.database_left
        )

    def replay(self) -> str:
        driver = (
            f" --async-driver {self.async_driver}"
            if "-postgresql-async" in self.combination
            else ""
        )
        return (
            f"python benchmarks/soak.py --seed {self.seed} --tests {self.tests} "
            f"--combination {self.combination}{driver}"
        )


@dataclass
class Totals:
    tests: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    mismatches: int = 0
    violations: int = 0
    sequence_notes: int = 0
    databases_left: int = 0
    failed_chunks: list[Chunk] = field(default_factory=list)

    def add(self, chunk: Chunk) -> None:
        self.tests += chunk.tests
        if chunk.report is not None:
            report = chunk.report
            self.seconds += report.seconds
            self.outcomes.update(report.counts())
            self.mismatches += len(report.mismatches)
            self.violations += len(report.violations)
            self.sequence_notes += report.notes
        self.databases_left += chunk.database_left
        if not chunk.ok:
            self.failed_chunks.append(chunk)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=10000, help="tests per combination")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    parser.add_argument(
        "--combination", default="all", help=f"one of {', '.join(COMBINATIONS)}, or all"
    )
    parser.add_argument("--chunk", type=int, default=2000, help="tests per pytest subprocess")
    parser.add_argument("--jobs", type=int, default=2, help="pytest subprocesses at a time")
    parser.add_argument("--keep", type=Path, help="write the projects here and keep them")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per chunk")
    parser.add_argument(
        "--async-driver",
        choices=[*ASYNC_DRIVERS, "both"],
        default="both",
        help="async PostgreSQL driver; both: alternate from chunk to chunk",
    )
    args = parser.parse_args(argv)
    if args.combination != "all" and args.combination not in COMBINATIONS:
        parser.error(f"--combination must be one of {', '.join(COMBINATIONS)} or all")
    return args


def scratch_dir() -> str:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return tempfile.mkdtemp(prefix="alchemy-soak-", dir=shm)
    return tempfile.mkdtemp(prefix="alchemy-soak-")


def run_chunk(chunk: Chunk, root: Path, server: Any, timeout: float) -> Chunk:
    strategy, backend, mode = chunk.combination.split("-")
    chunk.directory = root / f"{chunk.combination}-{chunk.seed}"
    generated = generate(chunk.seed, chunk.tests, strategy, backend, mode)
    scratch = None
    try:
        if backend == "sqlite":
            scratch = scratch_dir()
            url = f"sqlite:///{scratch}/app.db"
        else:
            database = f"soak_{chunk.seed}_{strategy}_{mode}"
            url = postgresql_url(server.url, database, mode, chunk.async_driver)
        chunk.report = run(generated, chunk.directory, url, timeout=timeout)
        chunk.database_left = database_left(backend, url, scratch, server)
    except Exception as error:
        chunk.error = f"{type(error).__name__}: {error}"
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return chunk


def database_left(backend: str, url: str, scratch: str | None, server: Any) -> bool:
    if backend == "sqlite":
        return scratch is not None and any(Path(scratch).glob("test_app.db*"))
    name = "test_" + str(sa.make_url(url).database)
    admin = sa.create_engine(
        server.url.set(drivername="postgresql+psycopg"), poolclass=sa.pool.NullPool
    )
    try:
        with admin.connect() as connection:
            found = connection.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
    finally:
        admin.dispose()
    return found is not None


def describe(chunk: Chunk) -> str:
    if chunk.error is not None:
        return f"{chunk.combination} seed {chunk.seed}: {chunk.error}"
    assert chunk.report is not None
    line = chunk.report.summary()
    if chunk.database_left:
        line += "; THE TEST DATABASE WAS NOT DROPPED"
    return line


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    chosen = COMBINATIONS if args.combination == "all" else [args.combination]
    chunks = []
    for combination in chosen:
        left, index = args.tests, 0
        while left > 0:
            size = min(args.chunk, left)
            driver = args.async_driver
            if driver == "both":
                driver = ASYNC_DRIVERS[index % len(ASYNC_DRIVERS)]
            chunks.append(Chunk(combination, args.seed + index, size, driver))
            left -= size
            index += 1
    root = args.keep or Path(tempfile.mkdtemp(prefix="alchemy-soak-projects-"))
    root.mkdir(parents=True, exist_ok=True)
    server = None
    if any("-postgresql-" in chunk.combination for chunk in chunks):
        from pytest_alchemy.servers import start_server

        server = start_server("postgresql")
        print(f"PostgreSQL: {server.url.render_as_string(hide_password=True)}", flush=True)
    print(
        f"soak: seed {args.seed}, {args.tests} tests x {len(chosen)} combination(s), "
        f"{len(chunks)} chunk(s) of up to {args.chunk}, {args.jobs} at a time; projects in {root}",
        flush=True,
    )
    started = time.perf_counter()
    totals: dict[str, Totals] = {combination: Totals() for combination in chosen}
    try:
        with ThreadPoolExecutor(max_workers=args.jobs) as executor:
            futures = [
                executor.submit(run_chunk, chunk, root, server, args.timeout) for chunk in chunks
            ]
            for future in as_completed(futures):
                chunk = future.result()
                totals[chunk.combination].add(chunk)
                print(("ok   " if chunk.ok else "FAIL ") + describe(chunk), flush=True)
    finally:
        if server is not None:
            server.stop()
    wall = time.perf_counter() - started
    print(f"\ntotals (seed {args.seed}, wall {wall:.0f} s):")
    failed = False
    for combination, total in totals.items():
        outcomes = ", ".join(f"{n} {name}" for name, n in sorted(total.outcomes.items()))
        rate = total.tests / total.seconds if total.seconds else 0.0
        print(
            f"  {combination:28} {total.tests:6} tests ({outcomes}) in {total.seconds:6.0f} s "
            f"({rate:5.1f}/s); {total.mismatches} mismatches, {total.violations} violations, "
            f"{total.databases_left} databases left; {total.sequence_notes} tests advanced "
            "a sequence (not reset by design)"
        )
        for chunk in total.failed_chunks:
            failed = True
            print(f"    FAILED chunk, replay with: {chunk.replay()}")
            if chunk.report is not None:
                ids = [m.nodeid for m in chunk.report.mismatches]
                ids += sorted({str(v["nodeid"]) for v in chunk.report.violations})
                print(f"      failing tests: {', '.join(ids[:50]) or '-'}")
                print("      " + chunk.report.failures(10).replace("\n", "\n      "))
            else:
                print(f"      {chunk.error}")
    if not args.keep and not failed:
        shutil.rmtree(root, ignore_errors=True)
    elif failed:
        print(f"projects kept in {root}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
