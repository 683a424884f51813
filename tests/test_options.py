"""Settings, seed aliases, the report header and bad input, the way users meet them.

Each test writes a small project and runs pytest on it in a subprocess. Value
matrices live in ``test_settings.py``; here every run checks what a user sees:
the header, the exit code, the one-paragraph message, and that no traceback
from inside the plugin is shown.
"""

from __future__ import annotations

import importlib.util
import re

import pytest
from sqlalchemy.engine import make_url

from .helpers import (
    INI,
    MODELS,
    Project,
    failure_reports,
    pg_databases,
    postgresql_only,
    sqlite_only,
)

DB_TEST = """
from models import User

def test_db(alchemy_session):
    alchemy_session.add(User(name="a"))
    alchemy_session.flush()
"""

PLAIN_TEST = """
def test_plain():
    assert 1 + 1 == 2
"""


def output_of(result: pytest.RunResult) -> str:
    return result.stdout.str() + "\n" + result.stderr.str()


def assert_no_plugin_traceback(result: pytest.RunResult) -> None:
    output = output_of(result)
    assert "Traceback (most recent call last)" not in output
    assert "INTERNALERROR" not in output
    assert "pytest_alchemy/" not in output, "no frame or path from inside the plugin"


def usage_error(result: pytest.RunResult) -> str:
    """The run's usage error: exit code 4, one paragraph, no traceback."""
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output_of(result)
    lines = result.stderr.lines
    found = [index for index, line in enumerate(lines) if line.startswith("ERROR: ")]
    assert len(found) == 1, result.stderr.str()
    index = found[0]
    assert index + 1 == len(lines) or not lines[index + 1].strip(), "one paragraph"
    text = lines[index].removeprefix("ERROR: ")
    assert text.startswith("pytest-alchemy: ")
    assert_no_plugin_traceback(result)
    return text


def setup_error(result: pytest.RunResult, test: str) -> str:
    """The message shown for the set-up error of ``test``, without a plugin traceback."""
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if f"ERROR at setup of {test} " in line)
    section = []
    for line in lines[start + 1 :]:
        if line.startswith(("____", "====")):
            break
        section.append(line)
    messages = [line for line in section if line.startswith("pytest-alchemy: ")]
    assert messages, "\n".join(section)
    assert_no_plugin_traceback(result)
    return messages[0]


def header(result: pytest.RunResult) -> list[str]:
    return [
        line for line in result.stdout.lines if line.startswith(("alchemy: ", "alchemy settings: "))
    ]


# -- precedence and the header -------------------------------------------------------


@sqlite_only
def test_header_shows_each_value_with_its_source(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.ini(
        """
        alchemy_isolation = savepoint
        alchemy_lock_timeout = 5
        alchemy_leak_check = off
        alchemy_reuse_db = no
        """
    )
    monkeypatch.setenv("ALCHEMY_ISOLATION", "none")
    monkeypatch.setenv("ALCHEMY_LOCK_TIMEOUT", "7")
    monkeypatch.setenv("ALCHEMY_REUSE_DB", "no")
    project.tests(
        """
        from models import User

        def test_writes(alchemy_session):
            alchemy_session.add(User(name="kept"))
            alchemy_session.commit()
        """
    )
    result = project.run(
        "-v",
        "--database-uri",
        project.url,
        "--alchemy-lock-timeout",
        "9",
        "--alchemy-reuse-db",
        url=False,
    )
    result.assert_outcomes(passed=1)
    lines = header(result)
    assert lines[0].endswith(f" from url={project.url} (from command line --database-uri)")
    assert lines[1] == (
        "alchemy: isolation=none (env ALCHEMY_ISOLATION), schema=create_all (default)"
    )
    # Then, here, the line on the flags pytest-django owns; then the settings.
    settings_line = lines[-1]
    assert settings_line.startswith("alchemy settings: ")
    for shown in (
        "lock_timeout=9 (command line --alchemy-lock-timeout)",
        "reuse_db=on (command line --alchemy-reuse-db)",
        "leak_check=off (ini alchemy_leak_check in pytest.ini)",
        "metadata=models:Base (ini alchemy_metadata in pytest.ini)",
        "keep_db=off (default)",
        "test_prefix=test_ (default)",
    ):
        assert shown in settings_line
    # The values took effect: the URL given by alias was used, reuse kept the
    # database, and isolation=none left the committed row in it.
    assert project.exists()
    assert [row.name for row in project.sql("SELECT name FROM users")] == ["kept"]


@sqlite_only
def test_echo_logs_the_sql_of_failing_tests(project: Project) -> None:
    project.tests(
        """
        import pytest
        from models import User

        def test_fails(alchemy_session):
            alchemy_session.add(User(name="echoed"))
            alchemy_session.flush()
            assert False

        @pytest.mark.asyncio
        async def test_fails_async(alchemy_async_session):
            alchemy_async_session.add(User(name="echoed by async"))
            await alchemy_async_session.flush()
            assert False
        """
    )
    echoed = project.run("--alchemy-echo")
    echoed.assert_outcomes(failed=2)
    assert "INSERT INTO users" in echoed.stdout.str()
    assert "('echoed',)" in echoed.stdout.str()
    assert "('echoed by async',)" in echoed.stdout.str()
    assert "echo=on (command line --alchemy-echo)" in header(echoed)[-1]

    quiet = project.run()
    quiet.assert_outcomes(failed=2)
    assert "INSERT INTO users" not in quiet.stdout.str()
    # Without -v the header lists only the settings that are not defaults.
    settings_line = header(quiet)[-1]
    assert "metadata=models:Base (ini alchemy_metadata in pytest.ini)" in settings_line
    assert "(default)" not in settings_line.partition("alchemy settings: ")[2]
    assert "echo=" not in settings_line


@sqlite_only
@pytest.mark.parametrize("logging", ["log capture", "no:logging"])
def test_echo_shows_each_statement_once(project: Project, logging: str) -> None:
    """Echoed SQL is shown once, sync and async: by pytest's log capture, or without it
    (``-p no:logging``) by SQLAlchemy's own output, never by both."""
    project.tests(
        """
        import pytest
        from sqlalchemy import text

        def test_sync(alchemy_connection):
            alchemy_connection.execute(text("SELECT 4242 AS sync_marker"))
            assert False

        @pytest.mark.asyncio
        async def test_async(alchemy_async_connection):
            await alchemy_async_connection.execute(text("SELECT 4343 AS async_marker"))
            assert False
        """
    )
    args = ["--echo-db"] + (["-p", "no:logging"] if logging == "no:logging" else [])
    result = project.run(*args)
    result.assert_outcomes(failed=2)
    for statement in ("SELECT 4242 AS sync_marker", "SELECT 4343 AS async_marker"):
        echoed = [
            line
            for line in result.stdout.lines
            if "sqlalchemy.engine.Engine" in line and line.endswith(statement)
        ]
        assert len(echoed) == 1, (statement, echoed, output_of(result))


SLOW_FIRST_CONFTEST = """
import sqlite3
import time

import pytest
from models import Base


def pytest_alchemy_create_schema(connection, database):
    time.sleep(1)  # a slow build: migrations, say
    Base.metadata.create_all(connection)


class SlowFirstConnection(sqlite3.Connection):
    opened = 0

    def __init__(self, *args, **kwargs):
        type(self).opened += 1
        if type(self).opened == 1:
            time.sleep(1)  # a slow first connection: a cold cache, DNS, TLS
        super().__init__(*args, **kwargs)


@pytest.fixture(scope="session")
def alchemy_engine_options():
    return {"connect_args": {"factory": SlowFirstConnection}}
"""

OVERHEAD = re.compile(
    r"^3 database tests, isolation overhead (?P<median>\d+\.\d\d) ms/test \(set-up \+ "
    r"teardown, median of 2 steady tests; apart: first test (?P<first>\d+\.\d\d) ms, "
    r"preparing the database (?P<build>\d+\.\d\d) s\), 0 leaks, 0 connection resets$",
    re.M,
)


@sqlite_only
def test_the_overhead_is_a_median_of_steady_tests(project: Project) -> None:
    """A slow build and a slow first connection are reported apart: neither moves the
    median of the tests after the first."""
    project.write("conftest.py", SLOW_FIRST_CONFTEST)
    project.tests(
        """
        from models import User

        def test_one(alchemy_session):
            alchemy_session.add(User(name="one"))

        def test_two(alchemy_session):
            alchemy_session.add(User(name="two"))

        def test_three(alchemy_session):
            alchemy_session.add(User(name="three"))
        """
    )
    result = project.run()
    result.assert_outcomes(passed=3)
    found = OVERHEAD.search(result.stdout.str())
    assert found is not None, output_of(result)
    assert float(found["median"]) < 250, "a mean over 3 tests would be at least 333 ms"
    assert float(found["first"]) >= 1000, "the slow first connection is the first test's"
    assert float(found["build"]) >= 1.0, "the slow build is reported as such"


# -- seed aliases and pytest-django ------------------------------------------------------


def help_lines(result: pytest.RunResult, flag: str) -> list[str]:
    """The help lines that document ``flag`` (not merely mention it)."""
    pattern = re.compile(rf"^\s+{re.escape(flag)}(=\S+)?(\s|$)")
    return [line for line in result.stdout.lines if pattern.match(line)]


def test_help_without_django_lists_every_alias(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("-p", "no:django", "--help")
    assert result.ret == 0, output_of(result)
    for alias, flag in [
        ("--reuse-db", "--alchemy-reuse-db"),
        ("--create-db", "--alchemy-create-db"),
        ("--drop-db", "--alchemy-drop-db"),
        ("--no-db", "--alchemy-no-db"),
        ("--echo-db", "--alchemy-echo"),
        ("--database-uri", "--alchemy-url"),
    ]:
        lines = help_lines(result, alias)
        assert len(lines) == 1, alias
        assert lines[0].rstrip().endswith(f"Alias of {flag}."), lines[0]
        assert len(help_lines(result, flag)) == 1


@pytest.mark.parametrize(
    "order",
    [(), ("alchemy", "django"), ("django", "alchemy")],
    ids=["entry-points", "alchemy-first", "django-first"],
)
def test_aliases_back_off_next_to_pytest_django(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, order: tuple[str, ...]
) -> None:
    """Whatever order the plugins load in, pytest-django keeps its flags and nothing crashes."""
    args = ["--help"]
    if order:
        monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
        args = [*(part for name in order for part in ("-p", name)), *args]
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == 0, output_of(result)
    for owned in ("--reuse-db", "--create-db"):
        lines = help_lines(result, owned)
        assert len(lines) == 1, lines
        assert "Alias of" not in lines[0], "pytest-django's option, not ours"
    assert "Re-use the testing database" in result.stdout.str()
    for ours in ("--alchemy-reuse-db", "--alchemy-create-db"):
        assert len(help_lines(result, ours)) == 1
    for alias in ("--drop-db", "--no-db", "--echo-db", "--database-uri"):
        lines = help_lines(result, alias)
        assert len(lines) == 1, alias
        assert "Alias of --alchemy-" in lines[0]


@sqlite_only
def test_reuse_db_belongs_to_django_when_it_is_active(project: Project) -> None:
    """pytest-django (loaded by its entry point) owns --reuse-db: it does not reach us."""
    project.tests(DB_TEST)
    result = project.run("-v", "--reuse-db")
    result.assert_outcomes(passed=1)
    assert "django-" in result.stdout.str(), "pytest-django is active in this run"
    assert "reuse_db=off (default)" in header(result)[-1]
    assert (
        "alchemy: pytest-django owns --reuse-db, --create-db in this run: use "
        "--alchemy-reuse-db, --alchemy-create-db for pytest-alchemy" in header(result)
    )
    assert not project.exists(), "not reused: the database is dropped at the end"


@sqlite_only
def test_seed_aliases_select_their_settings(project: Project) -> None:
    project.tests(DB_TEST)
    kept = project.run("--alchemy-reuse-db")
    kept.assert_outcomes(passed=1)
    assert project.exists()

    project.tests(
        """
        from models import User

        def test_fails(alchemy_session, alchemy_database):
            alchemy_session.add(User(name="echoed"))
            alchemy_session.flush()
            assert not alchemy_database.reused, "--create-db rebuilds"
            assert False
        """
    )
    result = project.run(
        "-p",
        "no:django",
        "-v",
        "--database-uri",
        project.url,
        "--reuse-db",
        "--create-db",
        "--drop-db",
        "--echo-db",
        url=False,
    )
    result.assert_outcomes(failed=1)
    assert "FAILED test_app.py::test_fails - assert False" in result.stdout.lines
    lines = header(result)
    assert lines[0].endswith(f" from url={project.url} (from command line --database-uri)")
    for shown in (
        "reuse_db=on (command line --reuse-db)",
        "create_db=on (command line --create-db)",
        "drop_db=on (command line --drop-db)",
        "echo=on (command line --echo-db)",
    ):
        assert shown in lines[-1]
    assert "INSERT INTO users" in result.stdout.str(), "--echo-db logs SQL"
    assert not project.exists(), "--drop-db drops even with --reuse-db"


# -- no database --------------------------------------------------------------------------


NO_DB_TESTS = """
import pytest

def test_db(alchemy_session):
    raise AssertionError("must not run")

@pytest.mark.alchemy_db
def test_marked():
    raise AssertionError("must not run")

def test_plain():
    pass
"""


def test_no_db_skips_database_tests_and_creates_nothing(project: Project) -> None:
    project.tests(NO_DB_TESTS)
    before = pg_databases(project.admin) if project.admin is not None else set()
    result = project.run("--alchemy-no-db", "-rs")
    result.assert_outcomes(passed=1, skipped=2)
    assert (
        "alchemy: no database (alchemy_no_db from command line --alchemy-no-db)"
        in result.stdout.lines
    )
    reason = "no database: alchemy_no_db is set (from command line --alchemy-no-db)"
    assert result.stdout.str().count(reason) == 2
    assert not project.exists()
    if project.admin is not None:
        assert pg_databases(project.admin) == before
    else:
        assert not (project.path / "data").exists()
        assert not list(project.path.rglob("*.db"))


@sqlite_only
def test_no_db_alias(project: Project) -> None:
    project.tests(NO_DB_TESTS)
    result = project.run("--no-db", "-rs")
    result.assert_outcomes(passed=1, skipped=2)
    assert "alchemy_no_db is set (from command line --no-db)" in result.stdout.str()
    assert not project.exists()


@sqlite_only
def test_no_db_imports_no_app_code(project: Project) -> None:
    project.write("models.py", 'raise RuntimeError("imported!")\n')
    project.tests(NO_DB_TESTS)
    result = project.run("--alchemy-no-db")
    result.assert_outcomes(passed=1, skipped=2)
    assert "imported!" not in result.stdout.str()


# -- inert until used, and errors at the first database test ---------------------------------

UNREACHABLE = "postgresql+psycopg://u:secret@127.0.0.1:1/app"


@sqlite_only
def test_inert_until_a_test_needs_the_database(project: Project) -> None:
    project.write("models.py", 'raise RuntimeError("imported!")\n')
    project.ini("alchemy_app_sessions = models:Session")
    project.tests(PLAIN_TEST, name="test_plain.py")
    plain = project.run("--alchemy-url", UNREACHABLE, "test_plain.py", url=False)
    plain.assert_outcomes(passed=1)
    assert "imported!" not in output_of(plain)
    assert "url=postgresql+psycopg://u:***@127.0.0.1:1/app" in plain.stdout.str()
    assert "secret" not in output_of(plain)

    # A database test in the same setup (with importable models) errors clearly.
    project.write("models.py", MODELS)
    project.ini()
    project.tests(DB_TEST)
    result = project.run("--alchemy-url", UNREACHABLE, url=False)
    result.assert_outcomes(passed=1, errors=1)
    text = setup_error(result, "test_db")
    assert "u:***@127.0.0.1:1/app" in text
    assert "cannot reach" in text
    assert "secret" not in output_of(result)


@sqlite_only
def test_missing_metadata_errors_at_the_first_database_test(project: Project) -> None:
    ini = INI.replace("alchemy_metadata = models:Base\n", "").format(extra="")
    assert "alchemy_metadata" not in ini
    project.write("pytest.ini", ini)
    project.tests(
        """
        def test_db(alchemy_session):
            pass

        def test_plain():
            pass
        """
    )
    result = project.run()
    result.assert_outcomes(passed=1, errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, "a test error, not a usage error"
    text = setup_error(result, "test_db")
    assert "alchemy_metadata = myapp.models:Base" in text
    assert "no metadata" in text


@sqlite_only
@pytest.mark.parametrize(
    ("path", "fragments"),
    [
        (
            "nosuch.module:Base",
            ["'nosuch.module:Base'", "importing 'nosuch.module' failed", "pythonpath"],
        ),
        ("models:Nope", ["'models:Nope'", "has no attribute 'Nope'", "models:Base"]),
    ],
    ids=["module", "attribute"],
)
def test_metadata_path_that_does_not_resolve(
    project: Project, monkeypatch: pytest.MonkeyPatch, path: str, fragments: list[str]
) -> None:
    monkeypatch.setenv("ALCHEMY_METADATA", path)
    project.tests(DB_TEST + PLAIN_TEST)
    result = project.run()
    result.assert_outcomes()
    text = usage_error(result)
    assert text.startswith("pytest-alchemy: alchemy_metadata = ")
    for fragment in fragments:
        assert fragment in text


@sqlite_only
def test_setup_error_is_shown_once(project: Project) -> None:
    project.tests(DB_TEST)
    result = project.run("--alchemy-url", UNREACHABLE, url=False)
    result.assert_outcomes(errors=1)
    output = result.stdout.str()
    assert "During handling of the above exception" not in output
    # Once in the error section (the short summary below it may repeat it, uncut under CI).
    errors = failure_reports(output)
    assert errors.count("Is the server running") == 1


@pytest.mark.skipif(
    importlib.util.find_spec("pg8000") is not None, reason="needs pg8000 to be absent"
)
@sqlite_only
def test_missing_driver_names_it_and_the_extra(project: Project) -> None:
    project.tests(DB_TEST)
    result = project.run("--alchemy-url", "postgresql+pg8000://u:secret@127.0.0.1:1/app", url=False)
    text = usage_error(result)
    assert "pg8000 driver" in text
    assert "pip install 'pytest-alchemy[pg8000]'" in text
    assert "u:***@127.0.0.1" in text
    assert "secret" not in output_of(result)


@sqlite_only
def test_an_unsupported_backend_names_the_supported_ones(project: Project) -> None:
    project.tests(DB_TEST + PLAIN_TEST)
    result = project.run("--alchemy-url", "oracle://u:secret@db.example/app", url=False)
    assert header(result)[0] == (
        "alchemy: database (unsupported backend) from url=oracle://u:***@db.example/app "
        "(from command line --alchemy-url)"
    )
    text = usage_error(result)
    assert "the URL oracle://u:***@db.example/app is for 'oracle'" in text
    assert "Supported backends: postgresql, sqlite." in text
    assert "secret" not in output_of(result)


# -- usage errors -----------------------------------------------------------------------


@sqlite_only
@pytest.mark.parametrize(
    ("marker", "fragments"),
    [
        ('isolaton="none"', ["unknown keyword(s) isolaton", "Valid keywords: isolation, "]),
        (
            'isolation="nope"',
            ["isolation='nope'", "Valid choices: savepoint, truncate, recreate, clone, none"],
        ),
        ('leak_check="loud"', ["leak_check='loud'", "Valid choices: fail, warn, off"]),
        ('"none"', ["keyword arguments only, got positional ['none']", "(isolation='savepoint')"]),
    ],
    ids=["keyword", "value", "leak-check", "positional"],
)
def test_bad_marker_is_a_usage_error(project: Project, marker: str, fragments: list[str]) -> None:
    project.tests(
        f"""
        import pytest

        def test_plain():
            pass

        @pytest.mark.alchemy_db({marker})
        def test_marked():
            pass
        """
    )
    text = usage_error(project.run())
    assert "test_app.py::test_marked" in text
    for fragment in fragments:
        assert fragment in text


@sqlite_only
@pytest.mark.parametrize(
    ("env", "ini", "args", "fragments"),
    [
        pytest.param(
            {"ALCHEMY_ISOLATION": "savepiont"},
            "",
            [],
            [
                "isolation = 'savepiont' (from env ALCHEMY_ISOLATION)",
                "savepoint, truncate, recreate, clone, none",
            ],
            id="isolation",
        ),
        pytest.param(
            {},
            "alchemy_lock_timeout = -1",
            [],
            ["lock_timeout = '-1'", "ini alchemy_lock_timeout in pytest.ini", "positive"],
            id="lock-timeout",
        ),
        pytest.param(
            {"ALCHEMY_REUSE_DB": "maybe"},
            "",
            [],
            ["reuse_db = 'maybe'", "env ALCHEMY_REUSE_DB", "yes/no"],
            id="bool",
        ),
        pytest.param(
            {"ALCHEMY_URL": ""},
            "alchemy_url = sqlite:///fallback.db",
            [],
            ["url = '' (from env ALCHEMY_URL)", "empty", "Remove the environment variable"],
            id="empty-url",
        ),
        pytest.param(
            {},
            "",
            ["--alchemy-url", "postgresql://u:secret@db:port/app"],
            ["not a database URL", "u:***@db", "command line --alchemy-url"],
            id="unparsable-url",
        ),
        pytest.param(
            {"ALCHEMY_SERVER": "postgresql"},
            "",
            ["--alchemy-url", "postgresql://u:secret@db.example/app"],
            ["names the host 'db.example'", "env ALCHEMY_SERVER", "without host"],
            id="server-and-host",
        ),
    ],
)
def test_bad_setting_is_a_usage_error(
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    ini: str,
    args: list[str],
    fragments: list[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    project.ini(ini)
    project.tests(DB_TEST + PLAIN_TEST)
    result = project.run(*args, url=False)
    text = usage_error(result)
    for fragment in fragments:
        assert fragment in text
    assert "secret" not in output_of(result)
    assert not project.exists()


# -- the app's own session factories ------------------------------------------------------

APP_FACTORIES = """
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import (
    async_scoped_session, async_sessionmaker, create_async_engine,
)
from sqlalchemy.orm import Session as PlainSession, scoped_session, sessionmaker

HERE = Path(__file__).parent
engine = create_engine(f"sqlite:///{HERE / 'app_own.db'}")
async_engine = create_async_engine(f"sqlite+aiosqlite:///{HERE / 'app_own.db'}")
Scoped = scoped_session(sessionmaker(bind=engine))
AsyncScoped = async_scoped_session(async_sessionmaker(async_engine), scopefunc=lambda: 1)
NotAMaker = scoped_session(PlainSession)
"""

SCOPED_TESTS = """
import pytest
from sqlalchemy import func, select

import factories
from models import User

COUNT = select(func.count()).select_from(User)


def test_a_session_from_before_is_replaced():
    factories.Scoped()  # the app's session, on its own engine
    assert factories.Scoped.registry.has()


def test_writes_through_the_app_session(alchemy_session, alchemy_connection):
    session = factories.Scoped()
    assert session.get_bind() is alchemy_connection
    session.add(User(name="app"))
    session.commit()
    assert alchemy_session.scalar(COUNT) == 1


def test_the_app_session_is_restored():
    assert not factories.Scoped.registry.has()
    assert factories.Scoped.session_factory.kw["bind"] is factories.engine


@pytest.mark.asyncio
async def test_writes_through_the_async_app_session(alchemy_async_session):
    session = factories.AsyncScoped()
    session.add(User(name="async app"))
    await session.commit()
    assert await alchemy_async_session.scalar(COUNT) == 1


def test_the_async_app_session_is_restored():
    assert not factories.AsyncScoped.registry.has()
    assert factories.AsyncScoped.session_factory.kw["bind"] is factories.async_engine


def test_nothing_was_left(alchemy_session):
    assert alchemy_session.scalar(COUNT) == 0
"""


@sqlite_only
def test_scoped_app_sessions_are_bound_per_test_and_restored(project: Project) -> None:
    project.write("factories.py", APP_FACTORIES)
    project.ini("alchemy_app_sessions = factories:Scoped factories:AsyncScoped")
    project.tests(SCOPED_TESTS)
    result = project.run("-v", "--alchemy-keep-db")
    result.assert_outcomes(passed=6)
    assert not (project.path / "app_own.db").exists(), "the app's own database was used"
    assert project.sql("SELECT count(*) FROM users") == [(0,)]


APP_ENGINES = """
from pathlib import Path

from sqlalchemy import create_engine, insert
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from models import User

OWN = {own!r}
engine = create_engine(OWN["sync"])
async_engine = create_async_engine(OWN["async"])


def add_with_a_session(name):
    with Session(engine) as session:
        session.add(User(name=name))
        session.commit()


def add_with_connection_options(name):
    with Session(engine) as session:
        session.connection(execution_options={{"logging_token": "app"}})
        session.add(User(name=name))
        session.commit()


def add_in_a_transaction(name):
    with engine.begin() as connection:
        connection.execute(insert(User).values(name=name))


def add_without_committing(name):
    with engine.connect() as connection:
        connection.execute(insert(User).values(name=name))


def add_and_fail(name):
    with Session(engine) as session:
        session.add(User(name=name))
        session.flush()
        raise RuntimeError("the app failed")


def commit_twice(names):
    with engine.connect() as connection:
        for name in names:
            connection.execute(insert(User).values(name=name))
            connection.commit()
        connection.execute(insert(User).values(name="never committed"))


def reflect():
    # The app's connection is a Connection: inspect() and Alembic's comparison work on it.
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import inspect
    from sqlalchemy.engine import Connection

    with engine.connect() as connection:
        assert isinstance(connection, Connection)
        columns = sorted(column["name"] for column in inspect(connection).get_columns("users"))
        drift = compare_metadata(MigrationContext.configure(connection), User.metadata)
    return columns, drift


def add_through_a_bound_session(name):
    with Session(bind=engine.connect()) as session:
        session.add(User(name=name))
        session.commit()


async def reflect_async():
    from sqlalchemy import inspect

    async with async_engine.connect() as connection:
        names = await connection.run_sync(lambda sync: inspect(sync).get_columns("users"))
    return sorted(column["name"] for column in names)


async def add_with_an_async_session(name):
    async with AsyncSession(async_engine) as session:
        session.add(User(name=name))
        await session.commit()


async def add_in_an_async_transaction(name):
    async with async_engine.begin() as connection:
        await connection.execute(insert(User).values(name=name))


async def add_and_roll_back(name):
    async with async_engine.connect() as connection:
        await connection.execute(insert(User).values(name=name))
        await connection.rollback()
"""

APP_ENGINE_TESTS = """
import pytest
from sqlalchemy import func, select

import appdb
from models import User

NAMES = select(User.name).order_by(User.name)


def test_the_app_engine_joins_the_test(alchemy_session):
    appdb.add_with_a_session("a")
    appdb.add_in_a_transaction("b")
    appdb.add_without_committing("c")
    with pytest.raises(RuntimeError):
        appdb.add_and_fail("d")
    appdb.commit_twice(["e", "f"])
    appdb.add_with_connection_options("g")
    assert alchemy_session.scalars(NAMES).all() == ["a", "b", "e", "f", "g"]


def test_the_app_connection_is_a_connection(alchemy_session):
    assert appdb.reflect() == (sorted(User.__table__.columns.keys()), [])
    appdb.add_through_a_bound_session("h")
    assert alchemy_session.scalars(NAMES).all() == ["h"]


@pytest.mark.asyncio
async def test_the_async_app_connection_reflects(alchemy_async_session):
    assert await appdb.reflect_async() == sorted(User.__table__.columns.keys())


def test_the_app_engine_is_restored():
    assert "connect" not in vars(appdb.engine)
    assert "connect" not in vars(appdb.async_engine.sync_engine)


@pytest.mark.asyncio
async def test_the_async_app_engine_joins_the_test(alchemy_async_session):
    await appdb.add_with_an_async_session("x")
    await appdb.add_in_an_async_transaction("y")
    await appdb.add_and_roll_back("z")
    assert (await alchemy_async_session.scalars(NAMES)).all() == ["x", "y"]


def test_nothing_was_left(alchemy_session):
    assert alchemy_session.scalar(select(func.count()).select_from(User)) == 0
"""


def test_app_engines_hand_out_the_test_connection(project: Project) -> None:
    if project.backend == "sqlite":
        own = {"sync": "sqlite:///app_own.db", "async": "sqlite+aiosqlite:///app_own.db"}
    else:  # nothing listens there: a connection the plugin did not rebind fails
        own = {
            "sync": "postgresql+psycopg://app@127.0.0.1:1/app",
            "async": "postgresql+asyncpg://app@127.0.0.1:1/app",
        }
    project.write("appdb.py", APP_ENGINES.format(own=own))
    project.ini("alchemy_app_sessions = appdb:engine appdb:async_engine")
    project.tests(APP_ENGINE_TESTS)
    result = project.run("-v", "-p", "no:randomly", "--alchemy-keep-db")
    result.assert_outcomes(passed=6)
    assert "0 leaks" in result.stdout.str()
    assert not (project.path / "app_own.db").exists(), "the app's own database was used"
    assert project.sql("SELECT count(*) FROM users") == [(0,)]


@sqlite_only
@pytest.mark.parametrize(
    ("target", "fragments"),
    [
        (
            "factories:HERE",
            [
                "is a pathlib.PosixPath, which pytest-alchemy cannot bind",
                "It binds a sessionmaker",
                "myapp.db:SessionLocal",
            ],
        ),
        ("factories:NotAMaker", ["factory is not a sessionmaker", "Build it from a sessionmaker"]),
        ("factories:Missing", ["has no attribute 'Missing'", "factories:SessionLocal"]),
    ],
)
def test_app_sessions_that_cannot_be_rebound(
    project: Project, target: str, fragments: list[str]
) -> None:
    project.write("factories.py", APP_FACTORIES)
    project.ini(f"alchemy_app_sessions = {target}")
    project.tests(DB_TEST)
    result = project.run()
    text = usage_error(result)
    assert f"alchemy_app_sessions = {target!r}" in text
    for fragment in fragments:
        assert fragment in text
    assert_no_plugin_traceback(result)


# -- options that would make isolation impossible ----------------------------------------

OPTIONS_CONFTEST = """
import pytest
from sqlalchemy.pool import NullPool


@pytest.fixture(scope="session")
def {fixture}():
    return {options}
"""

ASYNC_DB_TEST = """
import pytest


@pytest.mark.asyncio
async def test_db(alchemy_async_session):
    pass
"""


@pytest.mark.parametrize(
    ("fixture", "options", "fragments"),
    [
        pytest.param(
            "alchemy_engine_options",
            '{"isolation_level": "AUTOCOMMIT"}',
            ["isolation_level = 'AUTOCOMMIT' commits every statement"],
            id="autocommit",
        ),
        pytest.param(
            "alchemy_engine_options",
            '{"isolation_level": "auto_commit"}',
            ["isolation_level = 'auto_commit' commits every statement"],
            id="autocommit-spelling",
        ),
        pytest.param(
            "alchemy_engine_options",
            '{"execution_options": {"isolation_level": "autocommit"}}',
            ["execution_options isolation_level = 'autocommit' commits every statement"],
            id="autocommit-execution-option",
        ),
        pytest.param(
            "alchemy_engine_options",
            '{"isolation_level": "read_uncommitted"}',
            ["lets a test read rows other tests have not committed", "READ COMMITTED"],
            id="read-uncommitted",
        ),
        pytest.param(
            "alchemy_engine_options",
            '{"connect_args": {"autocommit": True}}',
            ["connect_args autocommit=True makes the driver commit every statement"],
            id="driver-autocommit",
        ),
        pytest.param(
            "alchemy_session_options",
            '{"join_transaction_mode": "rollback_only"}',
            ["alchemy_session_options cannot set 'join_transaction_mode'", "create_savepoint"],
            id="session-join-mode",
        ),
        pytest.param(
            "alchemy_session_options",
            '{"bind": None}',
            ["alchemy_session_options cannot set 'bind'", "test's connection"],
            id="session-bind",
        ),
    ],
)
def test_options_that_break_isolation_are_refused(
    project: Project, fixture: str, options: str, fragments: list[str]
) -> None:
    project.write("conftest.py", OPTIONS_CONFTEST.format(fixture=fixture, options=options))
    project.tests(DB_TEST + PLAIN_TEST)
    result = project.run("--alchemy-keep-db")
    result.assert_outcomes(passed=1, errors=1)
    text = setup_error(result, "test_db")
    for fragment in fragments:
        assert fragment in text
    assert_no_plugin_traceback(result)
    assert project.sql("SELECT count(*) FROM users") == [(0,)]


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        pytest.param(
            '{"poolclass": NullPool}',
            ["alchemy_async_engine_options cannot set 'poolclass'", "per event loop"],
            id="poolclass",
        ),
        pytest.param(
            '{"isolation_level": "AUTOCOMMIT"}',
            ["alchemy_async_engine_options: isolation_level = 'AUTOCOMMIT'"],
            id="autocommit",
        ),
    ],
)
def test_async_engine_options_that_break_isolation_are_refused(
    project: Project, options: str, fragments: list[str]
) -> None:
    project.write(
        "conftest.py",
        OPTIONS_CONFTEST.format(fixture="alchemy_async_engine_options", options=options),
    )
    project.tests(ASYNC_DB_TEST)
    result = project.run()
    result.assert_outcomes(errors=1)
    text = setup_error(result, "test_db")
    for fragment in fragments:
        assert fragment in text
    assert_no_plugin_traceback(result)


def with_query(url: str, query: str) -> str:
    return make_url(url).update_query_string(query, append=True).render_as_string(False)


URL_FIXTURE_CONFTEST = """
import pytest


@pytest.fixture(scope="session")
def alchemy_url():
    return "{url}"
"""


@pytest.mark.parametrize(
    ("query", "fragments"),
    [
        ("isolation_level=AUTOCOMMIT", ["sets isolation_level=AUTOCOMMIT", "commits every"]),
        ("isolation_level=read-uncommitted", ["sets isolation_level=READ UNCOMMITTED"]),
    ],
)
def test_url_queries_that_break_isolation_are_refused(
    project: Project, query: str, fragments: list[str]
) -> None:
    """At start-up from the settings, and at the first database test from a fixture."""
    url = with_query(project.url, query)
    project.tests(DB_TEST + PLAIN_TEST)
    at_startup = project.run("--alchemy-url", url, url=False)
    assert at_startup.ret == pytest.ExitCode.USAGE_ERROR
    for fragment in fragments:
        assert fragment in output_of(at_startup)
    assert "(from command line --alchemy-url)" in output_of(at_startup)

    project.write("conftest.py", URL_FIXTURE_CONFTEST.format(url=url))
    from_fixture = project.run(url=False)
    from_fixture.assert_outcomes(passed=1, errors=1)
    text = setup_error(from_fixture, "test_db")
    for fragment in fragments:
        assert fragment in text
    assert "(from the alchemy_url fixture)" in text
    assert_no_plugin_traceback(from_fixture)


def test_the_header_defers_to_an_alchemy_url_fixture(project: Project) -> None:
    """A conftest's alchemy_url supplies the URL: the header, written before any fixture
    runs, says so instead of naming the embedded SQLite default; the run uses that URL."""
    project.tests(DB_TEST)
    project.write("conftest.py", URL_FIXTURE_CONFTEST.format(url=project.url))
    result = project.run("--alchemy-reuse-db", url=False)
    result.assert_outcomes(passed=1)
    target = header(result)[0]
    assert "embedded" not in target, target
    assert "test_alchemy" not in target, target
    assert target == (
        "alchemy: database from the URL returned by the alchemy_url fixture in conftest.py, "
        "which overrides the settings (named in the summary)"
    )
    summary = rf"^database {project.test_name} on {project.backend} .*: built"
    assert re.search(summary, result.stdout.str(), re.M), output_of(result)
    assert project.exists(), "the fixture's URL was used"


@postgresql_only
def test_a_driver_autocommit_url_parameter_is_refused(project: Project) -> None:
    project.tests(DB_TEST)
    result = project.run("--alchemy-url", with_query(project.url, "autocommit=true"), url=False)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "has an autocommit query parameter" in output_of(result)
    assert_no_plugin_traceback(result)


ACCEPTED_OPTIONS = """
import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session


class AppSession(Session):
    pass


class AppAsyncSession(AsyncSession):
    sync_session_class = AppSession


@pytest.fixture(scope="session")
def alchemy_engine_options():
    return {{
        "pool_size": 3,
        "isolation_level": "SERIALIZABLE",
        "execution_options": {{"app_marker": "set"}},
    }}


@pytest.fixture(scope="session")
def alchemy_session_options():
    return {{"expire_on_commit": False, "class_": {session_class}}}
"""

ACCEPTED_TESTS = """
import pytest
from conftest import AppSession
from models import User


def test_sync(alchemy_engine, alchemy_session, alchemy_sessionmaker):
    assert alchemy_engine.pool.size() == 3
    assert alchemy_engine.get_execution_options()["app_marker"] == "set"
    assert isinstance(alchemy_session, AppSession)
    # The test's sessionmaker makes sessions like it, on the same connection.
    connection = alchemy_session.connection()
    with alchemy_sessionmaker() as other:
        assert isinstance(other, AppSession)
        assert other.connection() is connection
    user = User(name="a")
    alchemy_session.add(user)
    alchemy_session.commit()
    assert "name" in user.__dict__, "not expired on commit"


@pytest.mark.asyncio
async def test_async(alchemy_async_engine, alchemy_async_session):
    # The sync options minus those async engines reject.
    assert alchemy_async_engine.get_execution_options()["app_marker"] == "set"
    user = User(name="b")
    alchemy_async_session.add(user)
    await alchemy_async_session.commit()
    assert user.name == "b"
    assert isinstance(alchemy_async_session.sync_session, AppSession)
"""


@sqlite_only
@pytest.mark.parametrize("session_class", ["AppSession", "AppAsyncSession"])
def test_options_that_keep_isolation_are_passed_on(project: Project, session_class: str) -> None:
    """A session class given in its sync or its async form serves both kinds of test;
    an isolation level that keeps transactions (SERIALIZABLE) is accepted."""
    project.write("conftest.py", ACCEPTED_OPTIONS.format(session_class=session_class))
    project.tests(ACCEPTED_TESTS)
    result = project.run()
    result.assert_outcomes(passed=2)


@sqlite_only
@pytest.mark.parametrize("returned", ["42", "'   '", "'::not a url::'"])
def test_an_alchemy_url_fixture_returning_no_url(project: Project, returned: str) -> None:
    project.write(
        "conftest.py",
        f"import pytest\n\n\n@pytest.fixture(scope='session')\ndef alchemy_url():\n"
        f"    return {returned}\n",
    )
    project.tests(DB_TEST + PLAIN_TEST)
    result = project.run(url=False)
    result.assert_outcomes(passed=1, errors=1)
    text = setup_error(result, "test_db")
    assert "the alchemy_url fixture returned" in text
    assert "which is not a database URL" in text
    assert_no_plugin_traceback(result)


# -- where the metadata comes from ------------------------------------------------------

SQLMODEL_MODELS = """
from sqlmodel import Field, SQLModel


class Hero(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
"""

EMPTY_BASE = """
from sqlalchemy.orm import DeclarativeBase


class Unused(DeclarativeBase):
    '''A Base without tables (a mixin library's, say): never chosen.'''
"""

TABLES_TEST = """
from sqlalchemy import inspect


def test_tables(alchemy_connection):
    print("TABLES", sorted(inspect(alchemy_connection).get_table_names()))
"""


@sqlite_only
@pytest.mark.parametrize(
    ("imported", "tables"),
    [
        (["models"], ["applications", "users", "vendors"]),
        (["sqlmodel_models"], ["hero"]),
        (["models", "sqlmodel_models"], ["applications", "hero", "users", "vendors"]),
    ],
    ids=["declarative", "sqlmodel", "both"],
)
def test_metadata_is_found_without_configuration(
    project: Project, imported: list[str], tables: list[str]
) -> None:
    """With no alchemy_metadata, the tables of the imported models are built; several
    bases (a declarative Base and SQLModel's) are built together."""
    project.write(
        "pytest.ini", INI.replace("alchemy_metadata = models:Base\n", "").format(extra="")
    )
    project.write("sqlmodel_models.py", SQLMODEL_MODELS)
    project.write("unused_base.py", EMPTY_BASE)
    project.write("conftest.py", "".join(f"import {name}\n" for name in [*imported, "unused_base"]))
    project.tests(TABLES_TEST)
    result = project.run("-s")
    result.assert_outcomes(passed=1)
    assert f"TABLES {tables}" in result.stdout.str()
    assert f"schema create_all ({len(tables)} tables)" in result.stdout.str()


@sqlite_only
@pytest.mark.parametrize(
    ("conftest", "ini", "fragments"),
    [
        (
            "",
            "alchemy_metadata = models:String",
            [
                "alchemy_metadata is <class 'sqlalchemy.sql.sqltypes.String'>, which is neither "
                "a MetaData nor a declarative Base",
                "(myapp.models:Base)",
            ],
        ),
        (
            "import pytest\n\n@pytest.fixture(scope='session')\ndef alchemy_metadata():\n"
            "    return []\n",
            "",
            ["alchemy_metadata is empty: it names no MetaData."],
        ),
    ],
    ids=["not-metadata", "empty-list"],
)
def test_metadata_that_names_no_tables_says_what_to_point_at(
    project: Project, conftest: str, ini: str, fragments: list[str]
) -> None:
    project.write(
        "pytest.ini", INI.replace("alchemy_metadata = models:Base\n", ini + "\n").format(extra="")
    )
    project.write("conftest.py", conftest)
    project.tests(DB_TEST + PLAIN_TEST)
    result = project.run()
    result.assert_outcomes(passed=1, errors=1)
    text = setup_error(result, "test_db")
    for fragment in fragments:
        assert fragment in text


@sqlite_only
@pytest.mark.parametrize(
    ("conftest", "ini"),
    [
        ("", "alchemy_metadata = models.Base"),
        (
            "import pytest\nimport models\n\n@pytest.fixture(scope='session')\n"
            "def alchemy_metadata():\n    return [models.Base, models.Base.metadata]\n",
            "",
        ),
    ],
    ids=["dotted-path", "same-metadata-twice"],
)
def test_other_spellings_of_the_metadata(project: Project, conftest: str, ini: str) -> None:
    """A dotted path works like ``module:attr``; a MetaData named twice is built once."""
    project.write(
        "pytest.ini", INI.replace("alchemy_metadata = models:Base\n", ini + "\n").format(extra="")
    )
    project.write("conftest.py", conftest)
    project.tests(TABLES_TEST)
    result = project.run("-s")
    result.assert_outcomes(passed=1)
    assert "TABLES ['applications', 'users', 'vendors']" in result.stdout.str()
    assert "schema create_all (3 tables)" in result.stdout.str()


@sqlite_only
def test_reaping_an_unreachable_server_is_a_usage_error(project: Project) -> None:
    project.tests(PLAIN_TEST)
    result = project.run("--alchemy-reap", "--alchemy-url", UNREACHABLE, url=False)
    text = usage_error(result)
    assert "cannot reach the PostgreSQL server of postgresql+psycopg://u:***@127.0.0.1:1/app" in (
        text
    )
    assert "secret" not in output_of(result)


@sqlite_only
def test_async_fixtures_on_another_loop_than_the_tests_are_warned_about(project: Project) -> None:
    project.write(
        "pytest.ini",
        INI.replace(
            "asyncio_default_fixture_loop_scope = function",
            "asyncio_default_fixture_loop_scope = module",
        ).format(extra=""),
    )
    project.tests(PLAIN_TEST)
    result = project.run()
    result.assert_outcomes(passed=1)
    text = " ".join(result.stdout.str().split())
    assert (
        "pytest-alchemy: asyncio_default_fixture_loop_scope = module but "
        "asyncio_default_test_loop_scope = function" in text
    )
    assert "loop_scope='function'" in text
