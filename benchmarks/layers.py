"""What a test in a seeded module costs: seed rows in a layer against seeding every test.

Usage::

    .venv/bin/python benchmarks/layers.py [--tests 300] [--backend sqlite|postgresql|all]
                                          [--rounds 3] [--warmup 1] [--keep DIR]

Generates one small project (``users``, ``teams``, ``memberships``) and N tiny
tests, each "insert a user, commit, count the users", written three ways and run
side by side, each as its own pytest process (a layer spans its whole module, so
the ways cannot take turns in one run):

(a) ``alchemy_session`` on an empty database: a plain savepoint test, the 1.00x
    reference;
(b) the same test in a module whose 50 seed users are written once, by a
    ``@pytest_alchemy.layer(scope="module")`` fixture: every test sees them and is
    rolled back to them;
(c) the same 50 users added (and flushed) by a function-scoped fixture before
    every test, the way seed data is written without layers.

The target: a test in a seeded module (b) costs no more than a plain savepoint
test (a). The layer's own set-up (writing the seed rows once) is paid by the
module's first test, which the per-test mean leaves out (see ``_harness.py``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from _harness import Benchmark, Target, Variant, test_module
from _harness import main as run

SEED = 50

CONFTEST = f'''\
"""The seed rows: written once by a module layer, or by a fixture before every test."""

import pytest
import pytest_alchemy

from models import User

SEED = {SEED}


def rows():
    return [User(name=f"seed {{n}}", email=f"seed{{n}}@example.com") for n in range(SEED)]


@pytest_alchemy.layer(scope="module")
def layer_seed(alchemy_session):
    alchemy_session.add_all(rows())
    alchemy_session.commit()


@pytest.fixture
def per_test_seed(alchemy_session):
    alchemy_session.add_all(rows())
    alchemy_session.flush()


@pytest.fixture
def no_seed():
    pass
'''

HEADER = """\
from sqlalchemy import func, select

from conftest import SEED
from models import User
"""

BODY = """\
def NAME(FIXTURE, alchemy_session):
    alchemy_session.add(User(name="test", email="test@example.com"))
    alchemy_session.commit()
    assert alchemy_session.scalar(select(func.count()).select_from(User)) == EXPECTED
"""


def variants(target: Target, root: str, tests: int) -> list[Variant]:
    ini = {"alchemy_metadata": "models:Base"}
    if target.plugin_url is not None:
        ini["alchemy_url"] = target.plugin_url
    plugins = frozenset({"alchemy"})

    def module(fixture: str, expected: str) -> str:
        body = BODY.replace("FIXTURE", fixture).replace("EXPECTED", expected)
        return test_module(HEADER, body, tests)

    return [
        Variant(
            "plain",
            "(a) plain savepoint test, no seed rows",
            CONFTEST,
            module("no_seed", "1"),
            ini=ini,
            plugins=plugins,
        ),
        Variant(
            "layer",
            f"(b) {SEED} seed rows in a module layer, written once",
            CONFTEST,
            module("layer_seed", "SEED + 1"),
            ini=ini,
            plugins=plugins,
            baseline="plain",
        ),
        Variant(
            "reseed",
            f"(c) {SEED} seed rows written before every test",
            CONFTEST,
            module("per_test_seed", "SEED + 1"),
            ini=ini,
            plugins=plugins,
            baseline="plain",
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return run(
        Benchmark(
            description=__doc__.split("\n\n")[0],
            sqlite_title="SQLite file (pysqlite)",
            postgresql_drivers=("psycopg",),
            recipe_databases=(),
            variants=variants,
            packages=("psycopg", "pytest-alchemy"),
        ),
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
