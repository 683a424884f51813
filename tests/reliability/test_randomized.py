"""Randomized isolation suite: a green run must mean isolated tests.

For every strategy x backend x sync/async in :data:`COMBINATIONS`, ``generator.py``
writes a project of random tests with a fixed seed, each test with the outcome it must
have: ``pass``; ``leak`` (its teardown fails with the plugin's leak message naming
exactly the tables and row counts that another connection or a real commit changed);
``breach`` (it committed its outer transaction itself); ``failed`` (it raised with work
in progress, which must be discarded). The project runs in its own pytest subprocess;
its ``conftest.py`` checks out of band, after the plugin's teardown of every test and on
a connection of its own, that the database is exactly the baseline (rows, tables, no
session left inside a transaction, no advisory lock), and at the start of every test
that the plugin's connection carries no state from earlier tests. Here every outcome is
compared, the violations must be none, and the test database must be gone at the end.

Async runs on PostgreSQL alternate the driver by strategy (asyncpg for the first,
psycopg's async mode for the second...), so both drivers' statement caches meet the
resets. The combinations run two at a time (the work is mostly waiting for databases).
SQLite files go to ``/dev/shm`` where it exists: SQLite syncs every commit to disk,
which is not what these tests measure. ``RELIABILITY_TESTS`` changes the number of
tests per combination; ``benchmarks/soak.py`` runs the same generator at scale.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from pytest_alchemy.isolation import BUILTIN as STRATEGIES

from ..helpers import backend_marks
from .generator import combinations, generate
from .harness import ASYNC_DRIVERS, Report, postgresql_url, run

COMBINATIONS = combinations(list(STRATEGIES))
"""Every strategy x backend x mode: a new strategy or backend is one more entry."""
SEED = 20261126
TESTS = int(os.environ.get("RELIABILITY_TESTS", "300"))
PARALLEL = 2
TIMEOUT = 900.0


def combination_id(combination: tuple[str, str, str]) -> str:
    return "-".join(combination)


@dataclass
class Finished:
    report: Report
    database_left: bool
    directory: Path
    async_driver: str


class Runs:
    """The selected combinations, started together, two at a time, when the first is needed."""

    def __init__(
        self, root: Path, server: URL | None, admin: Engine | None, skip_reason: str | None
    ) -> None:
        self.root = root
        self.server = server
        self.admin = admin
        self.skip_reason = skip_reason
        self.executor = ThreadPoolExecutor(max_workers=PARALLEL)
        self.futures: dict[tuple[str, str, str], Future[Finished]] = {}

    def start(self, combinations: list[tuple[str, str, str]]) -> None:
        for combination in combinations:
            if combination[1] == "postgresql" and self.server is None:
                continue
            self.futures[combination] = self.executor.submit(self._run, combination)

    def result(self, combination: tuple[str, str, str]) -> Finished:
        if combination[1] == "postgresql" and self.server is None:
            pytest.skip(f"PostgreSQL is not available: {self.skip_reason}")
        return self.futures[combination].result()

    def _run(self, combination: tuple[str, str, str]) -> Finished:
        strategy, backend, mode = combination
        index = COMBINATIONS.index(combination)
        generated = generate(SEED + index, TESTS, strategy, backend, mode)
        directory = self.root / combination_id(combination)
        scratch: str | None = None
        driver = ASYNC_DRIVERS[list(STRATEGIES).index(strategy) % len(ASYNC_DRIVERS)]
        if backend == "sqlite":
            shm = Path("/dev/shm")
            fast = shm.is_dir() and os.access(shm, os.W_OK)
            scratch = tempfile.mkdtemp(prefix="alchemy-rel-", dir=shm if fast else directory.parent)
            url = f"sqlite:///{scratch}/app.db"
        else:
            assert self.server is not None
            url = postgresql_url(self.server, f"rel_{index}_{os.getpid()}", mode, driver)
        try:
            report = run(generated, directory, url, timeout=TIMEOUT)
            left = self._database_left(backend, url, scratch)
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        return Finished(report, left, directory, driver)

    def _database_left(self, backend: str, url: str, scratch: str | None) -> bool:
        if backend == "sqlite":
            assert scratch is not None
            return any(Path(scratch).glob("test_app.db*"))
        assert self.admin is not None
        name = "test_" + str(sa.make_url(url).database)
        with self.admin.connect() as connection:
            found = connection.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
        return found is not None

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="session")
def randomized_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runs]:
    selected: list[tuple[str, str, str]] = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if getattr(item, "originalname", None) == "test_randomized" and callspec is not None:
            params = callspec.params
            selected.append((params["strategy"], params["backend"], params["mode"]))
    server: URL | None = None
    admin: Engine | None = None
    reason: str | None = None
    if any(combination[1] == "postgresql" for combination in selected):
        try:
            server = request.getfixturevalue("pg_server")
            admin = request.getfixturevalue("pg_admin")
        except pytest.skip.Exception as skipped:
            reason = str(skipped)
    runs = Runs(tmp_path_factory.mktemp("randomized"), server, admin, reason)
    runs.start(selected)
    try:
        yield runs
    finally:
        runs.close()


def _param(combination: tuple[str, str, str]) -> Any:
    marks = backend_marks(combination[1])
    return pytest.param(*combination, id=combination_id(combination), marks=marks)


@pytest.mark.slow
@pytest.mark.parametrize(("strategy", "backend", "mode"), [_param(c) for c in COMBINATIONS])
def test_randomized(
    randomized_runs: Runs,
    strategy: str,
    backend: str,
    mode: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    finished = randomized_runs.result((strategy, backend, mode))
    report = finished.report
    with capsys.disabled():
        print(f"\n{report.summary()}")
    replay = (
        f"replay: python benchmarks/soak.py --seed {report.generated.seed} --tests {TESTS} "
        f"--combination {report.generated.id} --async-driver {finished.async_driver} "
        f"(project kept in {finished.directory})"
    )
    assert report.returncode in (0, 1), f"{report.failures()}\n{replay}"
    assert report.actual, f"no test ran:\n{report.output[-4000:]}\n{replay}"
    assert not report.mismatches, (
        f"{len(report.mismatches)} tests did not end as expected:\n{report.failures()}\n{replay}"
    )
    assert not report.violations, (
        f"{len(report.violations)} out-of-band violations:\n{report.failures()}\n{replay}"
    )
    assert not finished.database_left, f"the test database was not dropped at the end\n{replay}"
    assert report.counts() == report.expected()
