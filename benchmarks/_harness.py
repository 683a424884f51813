"""Shared machinery of the benchmark scripts: generated projects, timed pytest runs, tables.

Each variant is a complete little project in its own directory (``pytest.ini``,
``models.py``, ``conftest.py``, one test module and the timing plugin below).
Every run is a separate ``python -m pytest`` subprocess, so variants never
share an interpreter, an import cache or a connection pool. An interleaved
variant (``groups``) is the exception on purpose: it runs two ways in one
process, test by test in turns, and reports each way's tests as a row of its
own, so that both are timed on the same machine state.

How a test is timed
-------------------
A small plugin (``benchtimer.py``, loaded with ``-p benchtimer`` in every
variant) wraps ``pytest_runtest_protocol`` as the outermost wrapper and records
``time.perf_counter()`` around it: fixture set-up, the test, fixture teardown
and pytest's own reporting of that test. It also keeps the duration pytest
reports for each phase (set-up, call, teardown). The first test of a run also
pays for session-scoped set-up (creating the database, ``create_all``) and the
last one for session teardown, so both are left out: the per-test figure of a
run is the mean over the tests in between. The figure reported is the median
of that mean over the rounds; a ratio is the median over the rounds of the
ratio between two variants' runs of the same round. Next to the wall time the plugin records the CPU
time of the pytest process (``time.process_time()``), which a busy machine
inflates much less; it leaves out the database server's own work, so on
PostgreSQL it shows the client's side only.

This is steadier than "wall time of the run minus the wall time of an empty
run": interpreter start-up, imports, collection and database creation are
tens to hundreds of milliseconds that vary from run to run and would have to
be subtracted from a difference of a few milliseconds per test. The one-off
cost of the first test is shown in its own column.

Variants run interleaved: each round runs every variant once, in an order
rotated from round to round, so a slow patch of the machine hits all of them.
Only the pytest plugins a variant needs are loaded (every other ``pytest11``
entry point is disabled with ``-p no:NAME``), and every variant runs with
``-q -p no:cacheprovider``, so all of them pay the same pytest overhead.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

TIMER_PLUGIN = '''\
"""Record how long each test's runtest protocol takes; write the list at the end."""

import json
import os
import time

import pytest

_protocol = []
_phases = {}
_failed = set()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    started = time.perf_counter()
    cpu = time.process_time()
    try:
        return (yield)
    finally:
        _protocol.append(
            (item.nodeid, time.perf_counter() - started, time.process_time() - cpu)
        )


def pytest_runtest_logreport(report):
    _phases.setdefault(report.nodeid, {})[report.when] = report.duration
    if report.failed:
        _failed.add(report.nodeid)


def pytest_sessionfinish(session):
    rows = [
        {
            "nodeid": nodeid,
            "protocol": seconds,
            "cpu": cpu,
            "failed": nodeid in _failed,
            **_phases.get(nodeid, {}),
        }
        for nodeid, seconds, cpu in _protocol
    ]
    with open(os.environ["BENCH_TIMINGS"], "w") as out:
        json.dump(rows, out)
'''

MODELS = '''\
"""A small app schema: users, teams and the memberships between them."""

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(200), unique=True)


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)


class Membership(Base):
    __tablename__ = "memberships"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(20), default="member")
'''

# The pysqlite/aiosqlite fix from SQLAlchemy's SQLite dialect documentation: the
# driver would otherwise delay BEGIN until the first write, so a SAVEPOINT sent
# first starts (and its RELEASE commits) a transaction of its own, and the
# test's rows would survive the rollback. Hand-written SQLite recipes need it.
SQLITE_FIX = """\


def _emit_begin_ourselves(engine):
    @event.listens_for(engine, "connect")
    def _driver_transactions_off(dbapi_connection, _record):
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN")
"""


RECIPE_SESSION = """\
@pytest.fixture
def NAME(ENGINE):
    connection = ENGINE.connect()
    outer = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint")
    yield session
    session.close()
    outer.rollback()
    connection.close()
"""


def recipe_session(name: str = "session", engine: str = "engine") -> str:
    """The hand-written savepoint recipe's per-test fixture ``name``, on the session-scoped
    fixture ``engine``: a connection, an outer transaction and a ``create_savepoint``
    Session, rolled back afterwards."""
    return RECIPE_SESSION.replace("NAME", name).replace("ENGINE", engine)


@dataclass(frozen=True)
class Variant:
    """One way of writing the same tests."""

    key: str
    label: str
    conftest: str
    tests: str
    ini: dict[str, str] = field(default_factory=dict)
    plugins: frozenset[str] = frozenset()
    """The pytest11 entry points this variant keeps loaded; every other one is disabled."""
    args: tuple[str, ...] = ()
    baseline: str | None = None
    """The key of the variant the ratio column compares against."""
    counted: bool = True
    """Whether ``--instructions`` counts this variant (too slow under valgrind otherwise)."""
    groups: tuple[Group, ...] = ()
    """For a variant that interleaves several ways in one run: how its tests split."""
    models: str = MODELS
    """The project's ``models.py``."""
    failures_allowed: bool = False
    """Whether failing tests are results (counted in the ``failed`` column) rather than
    a broken benchmark: for a version that is expected to fail some of them."""
    version: str = ""
    """Which copy of the plugin runs this variant: "" for the one measured, ``COMPARED``
    for the one given with ``--compare-with``."""


@dataclass(frozen=True)
class Group:
    """The tests of an interleaved variant named ``test_<key>_<n>``, reported as one row."""

    key: str
    label: str
    baseline: str | None = None
    """The key of the group the ratio column compares against."""


@dataclass(frozen=True)
class Target:
    """A database backend the variants run against."""

    name: str
    title: str
    recipe_url: str
    """The URL the hand-written conftests connect to."""
    plugin_url: str | None
    """``alchemy_url`` for the plugin's variants; None for its embedded SQLite default."""
    driver: str = ""
    """The driver of the URLs (PostgreSQL: ``psycopg``, ``asyncpg``)."""


@dataclass
class Sample:
    """One pytest run of one variant."""

    mean: float
    p50: float
    cpu: float
    setup: float
    call: float
    teardown: float
    first: float
    wall: float
    failed: int = 0
    """Tests of the run (or of its group) that failed or errored in any phase."""


@dataclass
class Result:
    variant: Variant
    samples: list[Sample] = field(default_factory=list)
    instructions: float | None = None
    """Millions of CPU instructions per test (``--instructions``), or None."""

    def median(self, attribute: str) -> float:
        return float(statistics.median(getattr(sample, attribute) for sample in self.samples))


LOADS: list[float] = []
"""The 1-minute load average before each run, to judge how busy the machine was."""


def load_summary() -> str:
    if not LOADS:
        return "-"
    return f"{min(LOADS):.1f} to {max(LOADS):.1f} (median {statistics.median(LOADS):.1f})"


class BenchmarkError(RuntimeError):
    pass


# -- generated projects ------------------------------------------------------------------


def _module(header: str, tests: Iterable[tuple[str, str]]) -> str:
    """A test module: ``header``, then each ``(name, body)`` with NAME replaced by name."""
    parts = [header.rstrip() + "\n"]
    parts += ["\n\n" + body.replace("NAME", name).rstrip() + "\n" for name, body in tests]
    return "".join(parts)


def test_module(header: str, body: str, count: int) -> str:
    """``count`` tests, each ``body`` with NAME replaced by the test's name."""
    width = len(str(count))
    return _module(header, ((f"test_{index:0{width}d}", body) for index in range(count)))


def interleaved_module(header: str, bodies: Sequence[tuple[str, str]], count: int) -> str:
    """``count`` tests per ``(key, body)``, named ``test_<key>_<n>``, taking turns.

    The order within each turn alternates, so neither way always runs right after
    the other: both run in the same process, on the same warm interpreter, moments
    apart, and a slow patch of the machine hits them alike.
    """
    width = len(str(count))

    def turns() -> Iterator[tuple[str, str]]:
        for index in range(count):
            for key, body in bodies if index % 2 == 0 else list(reversed(bodies)):
                yield f"test_{key}_{index:0{width}d}", body

    return _module(header, turns())


def paired_variant(
    key: str,
    labels: tuple[str, str, str],
    conftest: str,
    header: str,
    body: str,
    fixtures: tuple[str, str],
    count: int,
    *,
    ini: dict[str, str],
    plugins: frozenset[str],
) -> Variant:
    """The plugin and the recipe in turns in one run: ``body`` with FIXTURE replaced by
    the plugin's fixture, then the recipe's. ``labels``: the variant's, then each side's."""
    label, plugin_label, recipe_label = labels
    plugin_fixture, recipe_fixture = fixtures
    tests = interleaved_module(
        header,
        [
            ("alchemy", body.replace("FIXTURE", plugin_fixture)),
            ("recipe", body.replace("FIXTURE", recipe_fixture)),
        ],
        count,
    )
    return Variant(
        key,
        label,
        conftest,
        tests,
        ini=ini,
        plugins=plugins,
        groups=(
            Group("alchemy", plugin_label, baseline=f"{key}_recipe"),
            Group("recipe", recipe_label),
        ),
    )


def write_project(folder: Path, variant: Variant) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    ini = ["[pytest]"] + [f"{key} = {value}" for key, value in variant.ini.items()]
    (folder / "pytest.ini").write_text("\n".join(ini) + "\n")
    (folder / "models.py").write_text(variant.models)
    (folder / "benchtimer.py").write_text(TIMER_PLUGIN)
    (folder / "conftest.py").write_text(variant.conftest)
    (folder / "test_bench.py").write_text(variant.tests)


def entry_point_plugins() -> list[str]:
    names = {
        entry.name
        for distribution in importlib.metadata.distributions()
        for entry in distribution.entry_points
        if entry.group == "pytest11"
    }
    return sorted(names)


def pytest_command(variant: Variant, installed: Sequence[str]) -> list[str]:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "benchtimer"]
    for name in installed:
        if name not in variant.plugins:
            command += ["-p", f"no:{name}"]
    return command + list(variant.args)


def clean_environment(folder: Path, timings: Path, plugin: Path) -> dict[str, str]:
    drop = ("PYTEST_", "ALCHEMY_", "PG")
    env = {key: value for key, value in os.environ.items() if not key.startswith(drop)}
    env["PYTHONPATH"] = os.pathsep.join((str(plugin), str(folder)))
    env["BENCH_TIMINGS"] = str(timings)
    return env


def run_pytest(
    folder: Path, command: Sequence[str], plugin: Path
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` (a pytest run, maybe under valgrind) in a project, output captured."""
    return subprocess.run(
        command,
        cwd=folder,
        env=clean_environment(folder, folder / "timings.json", plugin),
        capture_output=True,
        text=True,
        check=False,
    )


def run_once(
    folder: Path, variant: Variant, installed: Sequence[str], tests: int, plugin: Path
) -> list[tuple[str, Sample]]:
    """One run of ``variant``: a sample per result row (one, or one per group)."""
    timings = folder / "timings.json"
    timings.unlink(missing_ok=True)
    command = pytest_command(variant, installed)
    started = time.perf_counter()
    done = run_pytest(folder, command, plugin)
    wall = time.perf_counter() - started
    # Exit status 1: some tests failed, which is a result for such a variant.
    accepted = (0, 1) if variant.failures_allowed else (0,)
    if done.returncode not in accepted or not timings.exists():
        output = (done.stdout + done.stderr).strip().splitlines()[-40:]
        raise BenchmarkError(
            f"{variant.key} failed in {folder} (exit status {done.returncode}):\n"
            f"$ {' '.join(command)}\n" + "\n".join(output)
        )
    rows = json.loads(timings.read_text())
    expected = tests * max(1, len(variant.groups))
    if len(rows) != expected:
        raise BenchmarkError(f"{variant.key}: expected {expected} timed tests, got {len(rows)}")
    if not variant.groups:
        return [(variant.key, _sample(rows, rows[1:-1] if len(rows) > 2 else rows, wall))]
    # The first and last turn pay for the run's set-up and teardown.
    turn = len(variant.groups)
    middle = rows[turn:-turn] if len(rows) > 2 * turn else rows
    return [
        (
            group_key(variant, group),
            _sample(
                [row for row in rows if f"::test_{group.key}_" in row["nodeid"]],
                [row for row in middle if f"::test_{group.key}_" in row["nodeid"]],
                wall,
            ),
        )
        for group in variant.groups
    ]


def group_key(variant: Variant, group: Group) -> str:
    return f"{variant.key}_{group.key}"


def _sample(
    rows: Sequence[dict[str, Any]], middle: Sequence[dict[str, Any]], wall: float
) -> Sample:
    def mean(key: str) -> float:
        return statistics.fmean(row.get(key, 0.0) for row in middle) * 1000

    return Sample(
        failed=sum(1 for row in rows if row.get("failed")),
        mean=mean("protocol"),
        p50=statistics.median(row["protocol"] for row in middle) * 1000,
        cpu=mean("cpu"),
        setup=mean("setup"),
        call=mean("call"),
        teardown=mean("teardown"),
        first=rows[0]["protocol"] * 1000,
        wall=wall,
    )


def count_instructions(
    folder: Path, variant: Variant, installed: Sequence[str], tests: int, plugin: Path, count: int
) -> float:
    """Millions of CPU instructions the pytest process runs per test, counted by valgrind.

    Unlike time, the count does not depend on what else the machine is doing. Two runs
    of the same project, one selecting ``count`` tests and one half as many, differ by
    the cost of ``count - count // 2`` tests alone (start-up, collection and the first
    test's database set-up cancel out). Work done by a database server is not counted.
    """
    width = len(str(tests))
    totals = []
    for selected in (count, count // 2):
        command = [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            *pytest_command(variant, installed),
            *(f"test_bench.py::test_{index:0{width}d}" for index in range(selected)),
        ]
        done = run_pytest(folder, command, plugin)
        found = re.search(r"Collected : (\d+)", done.stderr)
        if done.returncode != 0 or found is None:
            output = (done.stdout + done.stderr).strip().splitlines()[-40:]
            raise BenchmarkError(
                f"{variant.key} failed under valgrind in {folder}:\n" + "\n".join(output)
            )
        totals.append(int(found.group(1)))
    return (totals[0] - totals[1]) / (count - count // 2) / 1e6


def run_all(
    root: Path,
    targets: Sequence[tuple[Target, Sequence[Variant]]],
    *,
    tests: int,
    rounds: int,
    warmup: int,
    plugins: Mapping[str, Path],
    instructions: int = 0,
) -> dict[str, list[Result]]:
    """Every variant, round after round; ``plugins``: the plugin copy per ``Variant.version``."""
    installed = entry_point_plugins()
    jobs: list[tuple[Target, Variant, Path, dict[str, Result]]] = []
    results: dict[str, list[Result]] = {}
    for target, variants in targets:
        results[target.name] = []
        for variant in variants:
            folder = root / target.name / variant.key
            write_project(folder, variant)
            rows = {variant.key: Result(variant)}
            if variant.groups:
                rows = {
                    group_key(variant, group): Result(
                        Variant(
                            group_key(variant, group),
                            group.label,
                            "",
                            "",
                            baseline=group.baseline,
                            counted=False,
                            failures_allowed=variant.failures_allowed,
                        )
                    )
                    for group in variant.groups
                }
            results[target.name].extend(rows.values())
            jobs.append((target, variant, folder, rows))
    for number in range(warmup + rounds):
        measured = number >= warmup
        shift = number % len(jobs)
        order = jobs[shift:] + jobs[:shift]
        what = f"round {number - warmup + 1}/{rounds}" if measured else "warm-up"
        for target, variant, folder, rows in order:
            LOADS.append(os.getloadavg()[0])
            print(f"  {what}: {target.name:<10} {variant.key:<18}", end="", flush=True)
            samples = run_once(folder, variant, installed, tests, plugins[variant.version])
            means = " / ".join(f"{sample.mean:.2f}" for _, sample in samples)
            print(f" {means} ms/test  ({samples[0][1].wall:5.1f} s)", flush=True)
            if measured:
                for key, sample in samples:
                    rows[key].samples.append(sample)
    if instructions:
        count = min(instructions, tests)
        for target, variant, folder, rows in jobs:
            if not variant.counted or variant.groups:
                continue
            result = rows[variant.key]
            print(f"  instructions: {target.name:<10} {variant.key:<18}", end="", flush=True)
            result.instructions = count_instructions(
                folder, variant, installed, tests, plugins[variant.version], count
            )
            print(f" {result.instructions:7.2f} M/test", flush=True)
    return results


# -- output ------------------------------------------------------------------------------

COLUMNS = (
    ("p50", "p50"),
    ("setup", "setup"),
    ("call", "call"),
    ("teardown", "teardown"),
    ("1st test", "first"),
)


def table(target: Target, results: Sequence[Result]) -> str:
    """A markdown table: wall and CPU time per test, each with its ratio to the baseline."""
    by_key = {result.variant.key: result for result in results}
    width = max(len(result.variant.label) for result in results)
    names = ["ms/test", "ratio", "cpu ms", "cpu ratio"] + [name for name, _ in COLUMNS]
    header = f"| {'variant':<{width}} | " + " | ".join(f"{name:>9}" for name in names) + " |"
    rule = f"|{'-' * (width + 2)}|" + "|".join("-" * 10 + ":" for _ in names) + "|"
    lines = [target.title, "", header, rule]

    referenced = {result.variant.baseline for result in results}

    def ratio(result: Result, attribute: str) -> str:
        key = result.variant.baseline
        if key is None:
            return "1.00x" if result.variant.key in referenced else "-"
        baseline = by_key.get(key)
        if baseline is None:
            return "-"
        # Paired by round: both ran in the same round, close together in time.
        pairs = zip(result.samples, baseline.samples, strict=True)
        ratios = [getattr(mine, attribute) / getattr(theirs, attribute) for mine, theirs in pairs]
        return f"{statistics.median(ratios):.2f}x"

    counted = any(result.instructions is not None for result in results)
    outcomes = any(result.variant.failures_allowed for result in results)
    if counted or outcomes:
        names += ["M instr", "instr ratio"] if counted else []
        names += ["failed"] if outcomes else []
        header = f"| {'variant':<{width}} | " + " | ".join(f"{name:>9}" for name in names) + " |"
        rule = f"|{'-' * (width + 2)}|" + "|".join("-" * 10 + ":" for _ in names) + "|"
        lines = [target.title, "", header, rule]

    def instruction_cells(result: Result) -> list[str]:
        if not counted:
            return []
        if result.instructions is None:
            return ["-", "-"]
        key = result.variant.baseline
        baseline = by_key.get(key) if key is not None else None
        if baseline is not None and baseline.instructions:
            relative = f"{result.instructions / baseline.instructions:.2f}x"
        else:
            relative = "1.00x" if result.variant.key in referenced else "-"
        return [f"{result.instructions:.2f}", relative]

    for result in results:
        cells = (
            [
                f"{result.median('mean'):.2f}",
                ratio(result, "mean"),
                f"{result.median('cpu'):.2f}",
                ratio(result, "cpu"),
            ]
            + [f"{result.median(attribute):.2f}" for _, attribute in COLUMNS]
            + instruction_cells(result)
            + ([f"{result.median('failed'):.0f}"] if outcomes else [])
        )
        lines.append(
            f"| {result.variant.label:<{width}} | " + " | ".join(f"{c:>9}" for c in cells) + " |"
        )
    return "\n".join(lines)


def versions(extra: Sequence[str]) -> str:
    found = [f"Python {platform.python_version()}"]
    for name in ("pytest", "SQLAlchemy", *extra):
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    found.append(f"SQLite {sqlite3.sqlite_version}")
    return ", ".join(found)


@dataclass(frozen=True)
class Frozen:
    """A copy of the plugin the runs import."""

    path: Path
    """The folder holding the copied ``pytest_alchemy`` (goes first on ``PYTHONPATH``)."""
    described: str
    tag: str
    """Short name for labels: the source's git commit, or where it came from."""


def freeze_plugin(root: Path, source: Path | None, folder: str = "plugin-source") -> Frozen:
    """Copy the pytest_alchemy package into ``root / folder``.

    Every run imports this copy (it comes first on ``PYTHONPATH``), so edits to
    the source during a long benchmark cannot mix two versions. ``source`` is a
    folder holding ``pytest_alchemy`` (such as a checkout's ``src``) or the
    package folder itself; by default, the installed package.
    """
    if source is None:
        import pytest_alchemy

        package = Path(pytest_alchemy.__file__).resolve().parent
    elif (source / "pytest_alchemy").is_dir():
        package = (source / "pytest_alchemy").resolve()
    else:
        package = source.resolve()
    if not (package / "plugin.py").is_file():
        raise BenchmarkError(f"no pytest_alchemy package in {source}")
    target = root / folder
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(
        package, target / "pytest_alchemy", ignore=shutil.ignore_patterns("__pycache__")
    )
    revision = _revision(package)
    if revision.startswith("git "):
        tag = revision.removeprefix("git ").replace(" with local changes", "+")
    else:
        tag = "installed" if source is None else package.parent.name
    return Frozen(target, f"pytest-alchemy from {package} ({revision}), copied at the start", tag)


def _revision(folder: Path) -> str:
    """The last commit that changed the package (not the checkout's HEAD, which may only
    have changed the benchmarks), and whether the package has local changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("log", "-1", "--format=%h", "--", ".")
        dirty = git("status", "--porcelain", "--", ".")
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    if not commit:
        return "not committed"
    return f"git {commit}" + (" with local changes" if dirty else "")


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}, {model}, {os.cpu_count()} cores"


# -- command line and servers ------------------------------------------------------------


def parser(description: str) -> argparse.ArgumentParser:
    found = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    found.add_argument("--tests", type=int, default=300, help="tests per run (default 300)")
    found.add_argument(
        "--backend",
        choices=("sqlite", "postgresql", "all"),
        default="all",
        help="which databases to measure (default all)",
    )
    found.add_argument("--rounds", type=int, default=3, help="measured rounds (default 3)")
    found.add_argument(
        "--warmup", type=int, default=1, help="unmeasured rounds run first (default 1)"
    )
    found.add_argument(
        "--postgresql-url",
        help="an existing PostgreSQL server's maintenance database (default: start a "
        "throwaway server with pytest_alchemy.servers.start_server)",
    )
    found.add_argument(
        "--plugin-source",
        type=Path,
        help="measure the pytest_alchemy package in this folder (a checkout's src, or a "
        "copy of it) instead of the installed one",
    )
    found.add_argument(
        "--compare-with",
        type=Path,
        metavar="DIR",
        help="also run every variant that loads the plugin against the pytest_alchemy "
        "package in DIR (another version's src), in the same rounds; rows are tagged with "
        "each version's git commit, and tests that fail on it are counted, not fatal",
    )
    found.add_argument(
        "--instructions",
        type=int,
        default=0,
        metavar="N",
        help="also count the CPU instructions per test with valgrind, over N tests (0, the "
        "default, skips it): deterministic, unlike time on a busy machine",
    )
    found.add_argument(
        "--keep",
        type=Path,
        help="write the generated projects here and keep them (default: a temporary directory)",
    )
    return found


@contextmanager
def workspace(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="alchemy-bench-") as folder:
        yield Path(folder)


@contextmanager
def postgresql(url: str | None) -> Iterator[tuple[Any, str]]:
    """The maintenance URL of a PostgreSQL server (started here unless given) and its version."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    server = None
    if url is None:
        from pytest_alchemy.servers import start_server

        server = start_server("postgresql")
        found = server.url
    else:
        found = make_url(url)
    try:
        engine = create_engine(found.set(drivername="postgresql+psycopg"))
        with engine.connect() as connection:
            version = str(connection.exec_driver_sql("SHOW server_version").scalar())
        engine.dispose()
        yield found, version
    finally:
        if server is not None:
            server.stop()


def create_databases(maintenance: Any, names: Sequence[str]) -> None:
    """(Re)create the empty databases the hand-written conftests connect to."""
    from sqlalchemy import create_engine

    engine = create_engine(
        maintenance.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with engine.connect() as connection:
        for name in names:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()


def url_text(url: Any) -> str:
    return str(url.render_as_string(hide_password=False))


# -- the scripts' main -------------------------------------------------------------------


COMPARED = "compared"
"""``Variant.version`` of the plugin copy given with ``--compare-with``."""


def versioned(variants: Sequence[Variant], tags: Mapping[str, str]) -> list[Variant]:
    """Every variant that loads the plugin once per plugin copy, each row tagged with its
    copy's name; the copies of a variant follow each other."""
    found = []
    for variant in variants:
        if "alchemy" not in variant.plugins:
            found.append(variant)
            continue
        for version, tag in tags.items():
            key = f"{variant.key}_{version}" if version else variant.key
            found.append(
                replace(
                    variant,
                    key=key,
                    label=f"{variant.label} [{tag}]",
                    version=version,
                    failures_allowed=variant.failures_allowed or bool(version),
                    groups=tuple(
                        replace(
                            group,
                            label=f"{group.label} [{tag}]",
                            baseline=None
                            if group.baseline is None
                            else key + group.baseline.removeprefix(variant.key),
                        )
                        for group in variant.groups
                    ),
                )
            )
    return found


@dataclass(frozen=True)
class Benchmark:
    """What one benchmark script measures; :func:`main` does the rest."""

    description: str
    sqlite_title: str
    postgresql_drivers: Sequence[str]
    """The drivers of the PostgreSQL URLs, such as ``psycopg`` or ``asyncpg``: a target
    (and table) each."""
    recipe_databases: Sequence[str]
    """Databases the hand-written variants expect on the PostgreSQL server."""
    variants: Callable[[Target, str, int], list[Variant]]
    """The variants for a target, given the folder for SQLite files and the test count."""
    packages: Sequence[str]
    """Packages whose versions the report names."""
    after_table: Callable[[Sequence[Result]], str] | None = None
    """Extra text printed under each target's table."""


def main(benchmark: Benchmark, argv: Sequence[str] | None = None) -> int:
    arguments = parser(benchmark.description).parse_args(argv)
    backends = ("sqlite", "postgresql") if arguments.backend == "all" else (arguments.backend,)
    targets: list[tuple[Target, list[Variant]]] = []
    with workspace(arguments.keep) as root, ExitStack() as stack:
        try:
            frozen = {"": freeze_plugin(root, arguments.plugin_source)}
            if arguments.compare_with is not None:
                frozen[COMPARED] = freeze_plugin(root, arguments.compare_with, "plugin-compared")
        except BenchmarkError as error:
            print(error, file=sys.stderr)
            return 1
        data = root / "data"
        data.mkdir(exist_ok=True)
        if "sqlite" in backends:
            sqlite = Target("sqlite", benchmark.sqlite_title, "", None)
            targets.append((sqlite, benchmark.variants(sqlite, str(data), arguments.tests)))
        if "postgresql" in backends:
            maintenance, version = stack.enter_context(postgresql(arguments.postgresql_url))
            create_databases(maintenance, benchmark.recipe_databases)
            drivers = benchmark.postgresql_drivers
            for driver in drivers:
                url = maintenance.set(drivername=f"postgresql+{driver}")
                pg = Target(
                    "postgresql" if len(drivers) == 1 else f"postgresql-{driver}",
                    f"PostgreSQL {version} ({driver}, unix socket)",
                    url_text(url),
                    url_text(url.set(database="bench_plugin")),
                    driver=driver,
                )
                targets.append((pg, benchmark.variants(pg, str(data), arguments.tests)))
        if COMPARED in frozen:
            tags = {version: copy.tag for version, copy in frozen.items()}
            targets = [(target, versioned(variants, tags)) for target, variants in targets]
        print(f"{arguments.tests} tests per run, {arguments.rounds} rounds, in {root}")
        try:
            results = run_all(
                root,
                targets,
                tests=arguments.tests,
                rounds=arguments.rounds,
                warmup=arguments.warmup,
                plugins={version: copy.path for version, copy in frozen.items()},
                instructions=arguments.instructions,
            )
        except BenchmarkError as error:
            print(f"\n{error}", file=sys.stderr)
            return 1
    print()
    print(machine())
    print(versions(benchmark.packages))
    for copy in frozen.values():
        print(copy.described + (f"; rows tagged [{copy.tag}]" if len(frozen) > 1 else ""))
    print(f"1-minute load average before the runs: {load_summary()}")
    print(f"{arguments.tests} tests per run; median over {arguments.rounds} rounds; ms")
    for target, _ in targets:
        print()
        print(table(target, results[target.name]))
        if benchmark.after_table is not None:
            print()
            print(benchmark.after_table(results[target.name]))
    return 0
