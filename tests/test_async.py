"""Async fixtures end to end: every runner, loop scope and async driver, and the errors.

Each matrix run writes one generated project with several test modules, one per
way of choosing the event loop (the ``asyncio_default_test_loop_scope`` ini
value, ``loop_scope=`` markers for function, module and session, anyio in
strict mode), plus a sync module, and runs it once with one driver and one
pytest-asyncio mode. Every module commits in its first tests and checks that
nothing is left in the next ones, so a wrong loop, a pooled connection reused
on another loop or a transaction that outlived its test shows up as a failure.

The other runs misuse the fixtures (a plain ``def`` test, trio, a fixture on
another loop, a task left running, a broken transaction) or hide a driver, and
check that each problem is explained on the test that caused it and never
reaches the next one.
"""

from __future__ import annotations

import importlib.util
import os
import re
import textwrap
from dataclasses import dataclass

import pytest
from sqlalchemy.engine import make_url

from .helpers import Project, backend_marks, postgresql_only, sqlite_only

MARKER_SCOPES = ("function", "module", "session")


def literal(text: str) -> str:
    """``text`` as an fnmatch pattern that matches only itself."""
    return re.sub(r"([][?*])", r"[\1]", text)


@dataclass(frozen=True)
class Driver:
    """How a run reaches its database."""

    name: str
    backend: str
    dialect: str
    """The async dialect's driver name the tests must see."""
    memory: bool = False

    def url(self, project: Project) -> str:
        if self.memory:
            return "sqlite+aiosqlite://"
        url = make_url(project.url)
        if self.name == "asyncpg":
            url = url.set(drivername="postgresql+asyncpg")
        return url.render_as_string(hide_password=False)


ASYNCPG = Driver("asyncpg", "postgresql", "asyncpg")
PSYCOPG = Driver("psycopg", "postgresql", "psycopg")
AIOSQLITE = Driver("aiosqlite", "sqlite", "aiosqlite")
AIOSQLITE_MEMORY = Driver("aiosqlite-memory", "sqlite", "aiosqlite", memory=True)


# -- generated modules ------------------------------------------------------------------

SUITE = """
import asyncio

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from models import User

{header}

SCOPE = {scope!r}
DRIVER = {driver!r}
LOOPS = []


async def count(runner):
    return await runner.scalar(select(func.count()).select_from(User))


async def test_commit_with_the_session(alchemy_async_session):
    LOOPS.append(asyncio.get_running_loop())
    dialect = alchemy_async_session.bind.dialect
    assert (dialect.driver, dialect.is_async) == (DRIVER, True)
    alchemy_async_session.add(User(name="committed"))
    await alchemy_async_session.commit()
    assert await count(alchemy_async_session) == 1


async def test_release_a_savepoint_of_the_connection(alchemy_async_connection):
    LOOPS.append(asyncio.get_running_loop())
    users = User.__table__
    async with alchemy_async_connection.begin_nested():
        await alchemy_async_connection.execute(users.insert().values(name="kept"))
    undone = await alchemy_async_connection.begin_nested()
    await alchemy_async_connection.execute(users.insert().values(name="undone"))
    await undone.rollback()
    names = await alchemy_async_connection.scalars(select(users.c.name))
    assert names.all() == ["kept"]


async def test_nothing_left_by_the_commits(alchemy_async_session):
    LOOPS.append(asyncio.get_running_loop())
    assert await count(alchemy_async_session) == 0


@pytest.mark.xfail(raises=RuntimeError, strict=True)
async def test_raises_in_the_middle_of_a_transaction(alchemy_async_session):
    LOOPS.append(asyncio.get_running_loop())
    alchemy_async_session.add(User(name="half done"))
    await alchemy_async_session.flush()
    raise RuntimeError("boom")


async def test_two_sessions_share_the_transaction(alchemy_async_sessionmaker):
    LOOPS.append(asyncio.get_running_loop())
    async with alchemy_async_sessionmaker() as first:
        user = User(name="first")
        first.add(user)
        await first.flush()
        user_id = user.id
        await first.commit()
        async with alchemy_async_sessionmaker() as second:
            assert (await second.scalars(select(User.name))).all() == ["first"]
            second.add(User(id=user_id, name="clash"))
            with pytest.raises(IntegrityError):
                await second.flush()
            await second.rollback()
            assert await count(second) == 1
        assert await count(first) == 1


@pytest.fixture
def through_a_fixture(alchemy_async_session):
    return alchemy_async_session


async def test_a_fixture_of_the_test_asks_for_the_session(through_a_fixture):
    LOOPS.append(asyncio.get_running_loop())
    through_a_fixture.add(User(name="through a fixture"))
    await through_a_fixture.commit()
    assert await count(through_a_fixture) == 1


@pytest.fixture
def asked_while_running(request):
    return request.getfixturevalue("alchemy_async_sessionmaker")


async def test_a_fixture_asks_for_the_sessionmaker_by_name(asked_while_running):
    LOOPS.append(asyncio.get_running_loop())
    async with asked_while_running() as session:
        session.add(User(name="asked by name"))
        await session.commit()
        assert await count(session) == 1


async def test_nothing_left_at_the_end(alchemy_async_session):
    LOOPS.append(asyncio.get_running_loop())
    assert await count(alchemy_async_session) == 0
    if SCOPE == "function":
        assert len(set(LOOPS)) == len(LOOPS), "one event loop per test"
    elif SCOPE in ("module", "session"):
        assert len(set(LOOPS)) == 1, "one event loop for the module"
"""

ANYIO_HEADER = """
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"
"""

SYNC = """
import pytest
from sqlalchemy import func, select, text

from models import User


def test_a_sync_test_commits(alchemy_session, alchemy_database):
    assert alchemy_session.get_bind().engine.url.database == alchemy_database.url.database
    alchemy_session.add(User(name="sync"))
    alchemy_session.commit()
    assert alchemy_session.scalar(select(func.count()).select_from(User)) == 1


@pytest.mark.asyncio
async def test_an_async_test_sees_the_tables_but_not_the_row(
    alchemy_async_connection, alchemy_database
):
    assert alchemy_async_connection.engine.url.database == alchemy_database.url.database
    count = await alchemy_async_connection.scalar(select(func.count()).select_from(User))
    assert count == 0
"""

MIXED = """

@pytest.mark.asyncio
async def test_sync_and_async_sessions_in_one_test(alchemy_session, alchemy_async_session):
    alchemy_session.add(User(name="sync"))
    alchemy_session.commit()
    alchemy_async_session.add(User(name="async"))
    await alchemy_async_session.commit()
    # Two connections, each in its own transaction: each sees its own row only.
    assert alchemy_session.scalars(select(User.name)).all() == ["sync"]
    assert (await alchemy_async_session.scalars(select(User.name))).all() == ["async"]


def test_the_mixed_test_left_nothing(alchemy_connection):
    assert alchemy_connection.scalar(text("SELECT count(*) FROM users")) == 0
"""


def suite(header: str, scope: str, driver: str) -> str:
    return SUITE.format(header=textwrap.dedent(header), scope=scope, driver=driver)


@dataclass(frozen=True)
class Combination:
    driver: Driver
    mode: str
    ini_scope: str

    @property
    def id(self) -> str:
        return f"{self.driver.name}-{self.mode}-ini_{self.ini_scope}"


# Every driver runs in both modes; the ini spelling covers every loop scope across the
# runs, the marker spelling covers every loop scope in every run.
COMBINATIONS = (
    Combination(ASYNCPG, "strict", "function"),
    Combination(ASYNCPG, "auto", "module"),
    Combination(PSYCOPG, "strict", "session"),
    Combination(PSYCOPG, "auto", "function"),
    Combination(AIOSQLITE, "strict", "module"),
    Combination(AIOSQLITE, "auto", "session"),
    Combination(AIOSQLITE_MEMORY, "strict", "function"),
)


def write_matrix(project: Project, combination: Combination) -> tuple[int, int]:
    """Write the modules of one run; returns the expected (passed, xfailed) counts."""
    driver, mode = combination.driver, combination.mode
    passed = xfailed = 0
    ini_header = "pytestmark = pytest.mark.asyncio" if mode == "strict" else ""
    project.tests(suite(ini_header, combination.ini_scope, driver.dialect), "test_ini.py")
    for scope in MARKER_SCOPES:
        header = f"pytestmark = pytest.mark.asyncio(loop_scope={scope!r})"
        project.tests(suite(header, scope, driver.dialect), f"test_marker_{scope}.py")
    modules = 1 + len(MARKER_SCOPES)
    if mode == "strict":
        # anyio next to pytest-asyncio needs strict mode (auto would run its fixtures).
        project.tests(suite(ANYIO_HEADER, "anyio", driver.dialect), "test_anyio.py")
        modules += 1
    passed += 7 * modules
    xfailed += modules
    # Named to run first: its committed row must be invisible to every async test.
    sync = SYNC
    passed += 2
    if driver.backend == "postgresql":
        sync += MIXED
        passed += 2
    project.tests(sync, "test_0_sync.py")
    return passed, xfailed


@pytest.mark.parametrize(
    ("backend", "combination"),
    [
        pytest.param(c.driver.backend, c, id=c.id, marks=backend_marks(c.driver.backend))
        for c in COMBINATIONS
    ],
)
def test_async_fixtures_on_every_loop_and_driver(
    project: Project, combination: Combination
) -> None:
    passed, xfailed = write_matrix(project, combination)

    result = project.run(
        "--alchemy-url",
        combination.driver.url(project),
        "-o",
        f"asyncio_mode={combination.mode}",
        "-o",
        f"asyncio_default_test_loop_scope={combination.ini_scope}",
        "-o",
        f"asyncio_default_fixture_loop_scope={combination.ini_scope}",
        "-p",
        "no:randomly",
        "-W",
        "error::pytest.PytestUnraisableExceptionWarning",
        url=False,
    )

    result.assert_outcomes(passed=passed, xfailed=xfailed, warnings=0)
    result.stdout.no_fnmatch_line("*was garbage collected*")
    result.stdout.fnmatch_lines(["database test_* on *: built*; at the end: dropped"])
    if combination.driver.memory:
        assert not (project.path / "data").exists(), "an in-memory run writes no file"
    else:
        assert not project.exists(), "the test database is dropped at the end"


# -- what goes wrong, and what users are told ---------------------------------------------

ERRORS = """
import asyncio

import pytest
import pytest_asyncio
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from models import User

SLOW = {
    "postgresql": "SELECT pg_sleep(0.5)",
    "sqlite": (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) "
        "SELECT count(*) FROM c"
    ),
}


async def count(runner):
    return await runner.scalar(select(func.count()).select_from(User))


async def write_and_count(session):
    session.add(User(name="next"))
    await session.commit()
    assert await count(session) == 1


def test_a_plain_def(alchemy_async_session):
    pass


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_on_trio(alchemy_async_session):
    pass


@pytest_asyncio.fixture(loop_scope="function")
async def users_on_another_loop(alchemy_async_session):
    return await count(alchemy_async_session)


@pytest.mark.asyncio(loop_scope="module")
async def test_fixture_on_another_loop(users_on_another_loop):
    pass


@pytest.mark.asyncio(loop_scope="module")
async def test_after_the_loop_mismatch(alchemy_async_session):
    await write_and_count(alchemy_async_session)


async def leave_a_query_running(session):
    async def slow_query():
        await session.execute(text(SLOW[session.bind.dialect.name]))

    session.add(User(name="left behind"))
    await session.flush()
    asyncio.create_task(slow_query())
    await asyncio.sleep(0.1)


@pytest.mark.asyncio
async def test_leaves_a_task_running(alchemy_async_session):
    await leave_a_query_running(alchemy_async_session)


@pytest.mark.asyncio
async def test_after_the_task(alchemy_async_session):
    await write_and_count(alchemy_async_session)


@pytest.mark.asyncio(loop_scope="module")
async def test_leaves_a_task_running_on_the_module_loop(alchemy_async_session):
    await leave_a_query_running(alchemy_async_session)


@pytest.mark.asyncio(loop_scope="module")
async def test_after_the_task_on_the_module_loop(alchemy_async_session):
    await asyncio.sleep(0.5)  # the task would have failed by now, had it been left running
    await write_and_count(alchemy_async_session)


@pytest.mark.asyncio
async def test_leaves_the_transaction_broken(alchemy_async_session, alchemy_async_connection):
    alchemy_async_session.add_all([User(id=1, name="a"), User(id=1, name="b")])
    with pytest.raises(IntegrityError):
        await alchemy_async_session.flush()
    insert = text("INSERT INTO users (id, name) VALUES (2, :name)")
    await alchemy_async_connection.execute(insert, {"name": "c"})
    with pytest.raises(IntegrityError):
        await alchemy_async_connection.execute(insert, {"name": "d"})


@pytest.mark.asyncio
async def test_after_the_broken_transaction(alchemy_async_session):
    await write_and_count(alchemy_async_session)
"""


@pytest.mark.parametrize(
    ("backend", "driver"),
    [
        pytest.param("sqlite", AIOSQLITE, id="aiosqlite"),
        pytest.param("postgresql", PSYCOPG, id="psycopg", marks=pytest.mark.postgresql),
        pytest.param("postgresql", ASYNCPG, id="asyncpg", marks=pytest.mark.postgresql),
    ],
)
def test_misuse_is_explained_and_never_reaches_the_next_test(
    project: Project, driver: Driver
) -> None:
    project.ini("alchemy_lock_timeout = 5")
    project.tests(ERRORS, "test_errors.py")

    result = project.run(
        "--alchemy-url",
        driver.url(project),
        "-p",
        "no:randomly",
        "-W",
        "error::pytest.PytestUnraisableExceptionWarning",
        url=False,
    )

    # The tests that leave a task running pass, and their teardown fails.
    result.assert_outcomes(passed=7, errors=5)
    nodeid = "test_errors.py::"
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_a_plain_def*",
            f"pytest-alchemy: alchemy_async_session needs an async test, but {nodeid}"
            "test_a_plain_def is a plain def*",
            "*ERROR at setup of test_on_trio[[]trio[]]*",
            literal(f"pytest-alchemy: {nodeid}test_on_trio[trio]")
            + " runs on the anyio backend 'trio', "
            "but SQLAlchemy's asyncio layer runs only on asyncio.*",
            "*ERROR at setup of test_fixture_on_another_loop*",
            f"*LoopMismatchError: pytest-alchemy: alchemy_async_session of {nodeid}"
            "test_fixture_on_another_loop belongs to the pytest-asyncio loop of scope 'module', "
            "but was used from a different event loop. A fixture that uses it probably runs on "
            "a loop of another scope: give that fixture loop_scope='module'*",
            "*ERROR at teardown of test_leaves_a_task_running *",
            f"pytest-alchemy: {nodeid}test_leaves_a_task_running left 1 task(s) running that "
            "use its database connection: leave_a_query_running.<locals>.slow_query.*",
            "*ERROR at teardown of test_leaves_a_task_running_on_the_module_loop*",
            f"pytest-alchemy: {nodeid}test_leaves_a_task_running_on_the_module_loop left 1 "
            "task(s) running*",
        ]
    )
    output = result.stdout.str()
    assert "Task exception was never retrieved" not in output
    assert "was garbage collected" not in output
    # The plugin's own errors come without a traceback through its code.
    assert "pytest_alchemy/" not in output
    assert not project.exists(), "the test database is dropped at the end"


# -- drivers missing -------------------------------------------------------------------------

HIDE = """
import sys

# The driver is not installed, as far as this run can tell.
for name in {modules!r}:
    sys.modules[name] = None
"""

ONE_SYNC_TWO_ASYNC = """
import pytest
from sqlalchemy import func, select

from models import User


def test_sync(alchemy_session):
    alchemy_session.add(User(name="sync"))
    alchemy_session.commit()


@pytest.mark.asyncio
async def test_async_writes(alchemy_async_session):
    alchemy_async_session.add(User(name="async"))
    await alchemy_async_session.commit()
    assert await alchemy_async_session.scalar(select(func.count()).select_from(User)) == 1


@pytest.mark.asyncio
async def test_async_sees_nothing(alchemy_async_session):
    assert await alchemy_async_session.scalar(select(func.count()).select_from(User)) == 0
"""


NO_RUNNER = """
import pytest


async def test_unmarked(alchemy_async_session):
    pass


@pytest.mark.anyio
async def test_on_anyio(alchemy_async_session):
    pass
"""


@pytest.mark.parametrize(
    ("backend", "mode", "failing", "expected"),
    [
        (
            "sqlite",
            "strict",
            "test_unmarked",
            "alchemy_async_session needs an async test runner, but no plugin runs "
            "test_no_runner.py::test_unmarked. Mark it @pytest.mark.asyncio*",
        ),
        (
            "sqlite",
            "auto",
            "test_on_anyio*",
            "test_no_runner.py::test_on_anyio* is an anyio test, but pytest-asyncio runs in "
            "auto mode and would run this test's async fixtures on its own event loop. Set "
            "asyncio_mode = strict*",
        ),
    ],
)
def test_an_async_test_no_loop_serves_is_told_what_to_do(
    project: Project, mode: str, failing: str, expected: str
) -> None:
    project.tests(NO_RUNNER, "test_no_runner.py")

    result = project.run("-o", f"asyncio_mode={mode}", "-p", "no:randomly")

    result.stdout.fnmatch_lines([f"*ERROR at setup of {failing}*", f"pytest-alchemy: {expected}"])
    assert "pytest_alchemy/" not in result.stdout.str()


@sqlite_only
def test_a_missing_async_driver_names_the_extra(project: Project) -> None:
    project.write("conftest.py", HIDE.format(modules=("aiosqlite",)))
    project.tests(ONE_SYNC_TWO_ASYNC)

    result = project.run()

    # Once, before any test runs: the sync test does not run either.
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.assert_outcomes()
    result.stderr.fnmatch_lines(
        [
            "ERROR: pytest-alchemy: async fixtures (alchemy_async_session, ...) need the aiosqlite "
            "driver for sqlite:///*app.db, but the module 'aiosqlite' is not installed. "
            + literal("Install it (pip install 'pytest-alchemy[sqlite-async]')")
            + "*",
        ]
    )
    assert "pytest_alchemy/" not in result.stdout.str()
    assert not project.exists()


@postgresql_only
def test_an_async_only_url_provisions_through_its_own_loop(project: Project) -> None:
    project.write("conftest.py", HIDE.format(modules=("psycopg", "psycopg2", "pg8000")))
    project.tests(ONE_SYNC_TWO_ASYNC)
    url = make_url(project.url).set(drivername="postgresql+asyncpg")
    given = url.render_as_string(hide_password=False)

    result = project.run("--alchemy-url", given, "-k", "not test_sync", url=False)

    result.assert_outcomes(passed=2, deselected=1)
    result.stdout.fnmatch_lines([f"*database {project.test_name} on postgresql*dropped*"])
    assert not project.exists(), "created and dropped without a sync driver"

    # With the sync test selected too, the run stops before creating anything.
    result = project.run("--alchemy-url", given, url=False)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: pytest-alchemy: sync fixtures (alchemy_session, alchemy_connection, ...) "
            "need a sync driver for postgresql+asyncpg://*: psycopg, psycopg2 or pg8000, and "
            "none of them can be imported (the module 'psycopg' is not installed). "
            + literal("Install psycopg (pip install 'pytest-alchemy[postgresql]')")
            + "*",
        ]
    )
    assert not project.exists()


ANYIO_ONLY = """
import pytest
from sqlalchemy import func, select

from models import User

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_commits_under_anyio(alchemy_async_session):
    alchemy_async_session.add(User(name="anyio"))
    await alchemy_async_session.commit()
    assert await alchemy_async_session.scalar(select(func.count()).select_from(User)) == 1


async def test_finds_nothing_left(alchemy_async_session):
    assert await alchemy_async_session.scalar(select(func.count()).select_from(User)) == 0
"""


WITHOUT_PYTEST_ASYNCIO = os.environ.get("ALCHEMY_TEST_PYTEST_ASYNCIO") == "absent"
"""Set by ``scripts/test`` in its leg whose virtualenv has no pytest-asyncio."""


def test_pytest_asyncio_is_installed_as_the_leg_says() -> None:
    """The anyio tests below prove something only in the right virtualenv: fail, never skip."""
    installed = importlib.util.find_spec("pytest_asyncio") is not None
    if WITHOUT_PYTEST_ASYNCIO:
        assert not installed, (
            "ALCHEMY_TEST_PYTEST_ASYNCIO=absent, but pytest-asyncio is installed: this leg "
            "must run in a virtualenv made from requirements/anyio.txt only"
        )
    else:
        assert installed, (
            "pytest-asyncio is not installed: install requirements/dev.txt (only the leg of "
            "scripts/test with ALCHEMY_TEST_PYTEST_ASYNCIO=absent runs without it)"
        )


def test_anyio_tests_run_without_pytest_asyncio(project: Project) -> None:
    """FastAPI's documented style: anyio alone, pytest-asyncio installed but turned off,
    or (in the leg of scripts/test without it) not installed at all."""
    project.tests(ANYIO_ONLY)
    off = [] if WITHOUT_PYTEST_ASYNCIO else ["-p", "no:asyncio"]
    result = project.run(*off, "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    assert "unknown configuration value" not in result.stdout.str() + result.stderr.str()
    plugins = next(line for line in result.outlines if line.startswith("plugins: "))
    assert "anyio-" in plugins
    assert "asyncio-" not in plugins.replace("anyio-", ""), plugins
