"""pytest-xdist: a database per worker, named in the header, reported by the controller.

A generated project runs with ``-n 2``: each worker plans, builds and drops its
own test database (``test_<app>_gw0``, ``test_<app>_gw1``); the controller's
header names both before any test runs, and its terminal summary reports the
figures each worker sent back (the overhead a median over every worker's tests).
Afterwards, out of band, neither database is left.
"""

from __future__ import annotations

import re

from .helpers import Project

TESTS = """
from models import User


def test_one(alchemy_session):
    alchemy_session.add(User(name="one"))
    alchemy_session.commit()
    assert alchemy_session.query(User).count() == 1


def test_two(alchemy_session):
    assert alchemy_session.query(User).count() == 0


def test_three(alchemy_session):
    alchemy_session.add(User(name="three"))
    alchemy_session.flush()


def test_four(alchemy_session):
    assert alchemy_session.query(User).count() == 0
"""


def test_each_worker_gets_its_database_and_the_controller_reports_them(
    project: Project,
) -> None:
    project.tests(TESTS)
    result = project.run("-n", "2", "-p", "no:randomly")
    result.assert_outcomes(passed=4)
    text = result.stdout.str()
    names = [f"{project.test_name}_gw0", f"{project.test_name}_gw1"]
    header = next(line for line in result.outlines if line.startswith("alchemy: database"))
    for name in names:
        assert name in header
    assert "(one per pytest-xdist worker)" in header
    driver = "pysqlite" if project.backend == "sqlite" else "psycopg"
    line = rf"^database ({project.test_name}_gw\d) on .* through {driver}: .*at the end: dropped$"
    reported = re.findall(line, text, re.M)
    assert sorted(reported) == names
    # Every worker sends its samples: the median is taken over all tests but each
    # worker's first, which is reported apart.
    overhead = (
        r"^4 database tests on 2 workers, isolation overhead \d+\.\d\d ms/test \(set-up \+ "
        r"teardown, median of [23] steady tests; apart, slowest worker: first test "
        r"\d+\.\d\d ms, preparing the database \d+\.\d\d s\), 0 leaks, 0 connection resets$"
    )
    assert re.search(overhead, text, re.M), text
    for name in (*names, project.test_name):
        assert not project.exists(name)
