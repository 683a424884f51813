"""Configuration errors that need no connection stop the run once, before any test runs.

Each case is a project with several database tests and one plain test, configured
wrongly in one way: the run stops with one paragraph (counted in the whole output),
no test database is created and no throwaway server started; a run of the plain
test alone is not stopped. A missing or broken driver is made so by a directory put
first on the child's ``PYTHONPATH``, whose package of the driver's name raises what
importing a missing (or broken) driver raises.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_alchemy import errors, servers

from .helpers import MODELS, Project, failure_reports, scrub_alchemy_env, sqlite_only

DB_TESTS = """
import pytest

from models import User


def test_one(alchemy_session):
    alchemy_session.add(User(name="one"))


def test_two(alchemy_session):
    alchemy_session.add(User(name="two"))


@pytest.mark.alchemy_db{marker}
def test_three():
    pass
"""

ASYNC_TESTS = """
import pytest

from models import User


@pytest.mark.asyncio
async def test_async_one(alchemy_async_session):
    alchemy_async_session.add(User(name="one"))


@pytest.mark.asyncio
async def test_async_two(alchemy_async_session):
    alchemy_async_session.add(User(name="two"))
"""

PLAIN_TEST = """
def test_plain():
    assert 1 + 1 == 2
"""

OFFLINE = "postgresql://u:secret@127.0.0.1:1/app"
"""A PostgreSQL URL nothing listens on: these checks must not need a connection."""

SYNC_DRIVERS = ("psycopg", "psycopg2", "pg8000")


def missing(name: str) -> str:
    return f"ModuleNotFoundError(\"No module named '{name}'\", name={name!r})"


@dataclass(frozen=True)
class Case:
    ini: str = ""
    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    hidden: dict[str, str] = field(default_factory=dict)
    """Module name -> the exception its import raises."""
    tests: str = DB_TESTS.format(marker="")
    fragments: tuple[str, ...] = ()
    """The first is the paragraph's own start, counted in the whole output."""


CASES = {
    "metadata-path": Case(
        env={"ALCHEMY_METADATA": "nosuch.module:Base"},
        fragments=(
            "pytest-alchemy: alchemy_metadata = 'nosuch.module:Base': importing 'nosuch.module'",
            "pythonpath = .",
        ),
    ),
    "metadata-attribute": Case(
        env={"ALCHEMY_METADATA": "models:Nope"},
        fragments=("pytest-alchemy: alchemy_metadata = 'models:Nope'", "has no attribute"),
    ),
    "app-session-path": Case(
        ini="alchemy_app_sessions = myapp.db:SessionLocal",
        fragments=(
            "pytest-alchemy: alchemy_app_sessions = 'myapp.db:SessionLocal': importing 'myapp.db'",
        ),
    ),
    "unsupported-backend": Case(
        args=("--alchemy-url", "oracle://u:secret@db.example/app"),
        fragments=(
            "pytest-alchemy: the URL oracle://u:***@db.example/app is for 'oracle'",
            "Supported backends: postgresql, sqlite.",
        ),
    ),
    "sync-driver": Case(
        args=("--alchemy-url", OFFLINE),
        hidden={name: missing(name) for name in SYNC_DRIVERS},
        fragments=(
            "pytest-alchemy: the connections that create and drop the test database need a "
            "sync driver for postgresql://u:***@127.0.0.1:1/app: psycopg, psycopg2 or pg8000",
            "the module 'psycopg' is not installed",
            "pip install 'pytest-alchemy[postgresql]'",
        ),
    ),
    "broken-driver": Case(
        args=("--alchemy-url", "postgresql+psycopg://u:secret@127.0.0.1:1/app"),
        hidden={"psycopg": 'ImportError("no pq wrapper available.\\nAttempts made: ...")'},
        fragments=(
            "pytest-alchemy: connections to the test database need the psycopg driver",
            "cannot be imported (ImportError: no pq wrapper available.)",
            "pip install 'pytest-alchemy[postgresql]'",
        ),
    ),
    "named-driver": Case(
        args=("--alchemy-url", "postgresql+psycopg2://u:secret@127.0.0.1:1/app"),
        hidden={"psycopg2": missing("psycopg2")},
        fragments=(
            "pytest-alchemy: connections to the test database need the psycopg2 driver",
            "pip install 'pytest-alchemy[psycopg2]'",
        ),
    ),
    "async-driver": Case(
        hidden={"aiosqlite": missing("aiosqlite")},
        tests=ASYNC_TESTS,
        fragments=(
            "pytest-alchemy: async fixtures (alchemy_async_session, ...) need the aiosqlite",
            "pip install 'pytest-alchemy[sqlite-async]'",
        ),
    ),
    "asyncpg": Case(
        args=("--alchemy-url", "postgresql+asyncpg://u:secret@127.0.0.1:1/app"),
        hidden={name: missing(name) for name in (*SYNC_DRIVERS, "asyncpg")},
        tests=ASYNC_TESTS,
        fragments=(
            "pytest-alchemy: connections to the test database need the asyncpg driver",
            "pip install 'pytest-alchemy[asyncpg]'",
        ),
    ),
    "greenlet": Case(
        hidden={"greenlet": missing("greenlet")},
        tests=ASYNC_TESTS,
        fragments=(
            "pytest-alchemy: async fixtures (alchemy_async_session, ...) need greenlet",
            "pip install 'pytest-alchemy[asyncio]'",
        ),
    ),
    "marker-value": Case(
        tests=DB_TESTS.format(marker='(isolation="nope")').replace(
            "def test_one", '@pytest.mark.alchemy_db(isolation="nope")\ndef test_one'
        ),
        fragments=(
            "@pytest.mark.alchemy_db(isolation='nope') names no isolation strategy",
            "Valid choices: savepoint, truncate, recreate, clone, none",
        ),
    ),
}


def output_of(result: pytest.RunResult) -> str:
    return result.stdout.str() + "\n" + result.stderr.str()


def hide(folder: Path, modules: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``modules`` fail to import in the runs started after this, as given."""
    for name, raised in modules.items():
        package = folder / name
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(f"raise {raised}\n")
    if modules:
        found = os.environ.get("PYTHONPATH")
        monkeypatch.setenv(
            "PYTHONPATH", os.pathsep.join([str(folder), *([found] if found else [])])
        )


def assert_stopped_once(result: pytest.RunResult, fragments: tuple[str, ...]) -> str:
    """The run stopped before any test with one paragraph, shown once; returns it."""
    output = output_of(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output
    assert output.count(fragments[0]) == 1, output
    paragraph = next(line for line in result.stderr.lines if fragments[0] in line)
    assert paragraph.startswith("ERROR: pytest-alchemy: ")
    for fragment in fragments[1:]:
        assert fragment in paragraph
    assert "secret" not in output
    assert "Traceback" not in output
    assert "pytest_alchemy/" not in output, "no frame or path from inside the plugin"
    assert " passed" not in output
    assert " error" not in result.stdout.str()
    return paragraph


@sqlite_only
@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_a_configuration_error_stops_the_run_once_before_any_test(
    project: Project, case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.ini(case.ini)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    project.tests(case.tests)
    project.tests(PLAIN_TEST, "test_plain.py")
    hide(tmp_path / "hidden", case.hidden, monkeypatch)

    # Tests that need no database are not stopped by a setting they do not use.
    plain = project.run("test_plain.py", *case.args, url=not case.args)
    plain.assert_outcomes(passed=1)
    selected = project.run("-k", "plain", *case.args, url=not case.args)
    selected.assert_outcomes(passed=1, deselected=case.tests.count("def test_"))

    result = project.run(*case.args, url=not case.args)
    assert_stopped_once(result, case.fragments)
    assert not (project.path / "data").exists(), "no test database was created"


@sqlite_only
def test_under_xdist_the_error_is_shown_once_and_nothing_runs(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALCHEMY_METADATA", "nosuch.module:Base")
    project.tests(DB_TESTS.format(marker="") + PLAIN_TEST)
    result = project.run("-n", "2")
    output = output_of(result)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, output
    # Once in the error section (the short summary below it repeats it, uncut under CI).
    errors_section = failure_reports(output)
    assert errors_section.count("pytest-alchemy: alchemy_metadata = 'nosuch.module:Base'") == 1
    assert " passed" not in output
    assert "INTERNALERROR" not in output
    assert not (project.path / "data").exists()


@sqlite_only
def test_a_conftest_fixture_overrides_what_is_not_checked_early(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The configured metadata path is unused when a conftest overrides ``alchemy_metadata``."""
    monkeypatch.setenv("ALCHEMY_METADATA", "nosuch.module:Base")
    project.write(
        "conftest.py",
        "import pytest\n\nimport models\n\n\n@pytest.fixture(scope='session')\n"
        "def alchemy_metadata():\n    return models.Base\n",
    )
    project.tests(DB_TESTS.format(marker=""))
    project.run().assert_outcomes(passed=3)


# -- a throwaway server is not started for a run that cannot work ------------------------


@pytest.fixture
def server_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short temporary directory of the child's own, where its servers' root would go."""
    with tempfile.TemporaryDirectory(prefix="pa-", dir="/tmp") as folder:
        monkeypatch.setenv("TMPDIR", folder)
        yield Path(folder)


@pytest.mark.postgresql
@pytest.mark.parametrize(
    "case",
    [
        Case(
            env={"ALCHEMY_METADATA": "nosuch.module:Base"},
            fragments=("pytest-alchemy: alchemy_metadata = 'nosuch.module:Base'",),
        ),
        Case(
            hidden={name: missing(name) for name in SYNC_DRIVERS},
            fragments=(
                "pytest-alchemy: the connections that create and drop the test database need a "
                "sync driver for the throwaway postgresql server (alchemy_server from command "
                "line --alchemy-server): psycopg, psycopg2 or pg8000",
                "pip install 'pytest-alchemy[postgresql]'",
            ),
        ),
    ],
    ids=["metadata-path", "sync-driver"],
)
def test_no_throwaway_server_is_started_for_a_run_that_cannot_work(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    server_tmp: Path,
    tmp_path: Path,
    case: Case,
) -> None:
    try:
        servers.find_postgresql_binaries()
    except errors.ServerError:  # pragma: no cover - depends on the machine
        pytest.skip("the PostgreSQL server programs are not installed")
    scrub_alchemy_env(monkeypatch)
    project = Project(pytester, "postgresql")
    project.write("models.py", MODELS)
    project.ini(case.ini)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    project.tests(DB_TESTS.format(marker=""))
    hide(tmp_path / "hidden", case.hidden, monkeypatch)

    result = project.run("--alchemy-server", "postgresql", url=False)

    assert_stopped_once(result, case.fragments)
    assert list(server_tmp.iterdir()) == [], "no server directory (nor its root) was made"


@sqlite_only
def test_a_driver_missing_behind_an_overridden_url_is_one_paragraph_per_test(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The URL a conftest's fixture returns is known only at set-up: the same paragraph."""
    project.write(
        "conftest.py",
        f"import pytest\n\n\n@pytest.fixture(scope='session')\ndef alchemy_url():\n"
        f"    return {OFFLINE!r}\n",
    )
    project.tests(DB_TESTS.format(marker=""))
    hide(tmp_path / "hidden", {name: missing(name) for name in SYNC_DRIVERS}, monkeypatch)

    result = project.run(url=False)

    result.assert_outcomes(errors=3)
    output = output_of(result)
    errors_section = failure_reports(output)
    assert errors_section.count("need a sync driver for postgresql://u:***@127.0.0.1:1/") == 3
    assert "pip install 'pytest-alchemy[postgresql]'" in output
    assert "Traceback" not in output
    assert "pytest_alchemy/" not in output, "no frame or path from inside the plugin"
    assert "secret" not in output
