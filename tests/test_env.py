"""``alchemy_env``: the app's own settings lead to the test database before it is imported.

The generated apps read ``DATABASE_URL`` (or FastAPI-template style parts) when they
are imported and build their engine at module level, the way real apps do; they are
imported from the rootdir's conftest.py, a conftest.py below it and the test modules.
What each saw is written to files and checked after the run, and what the variables
hold after pytest is done is printed by an ``atexit`` function of the run itself.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from .helpers import (
    Project,
    pg_databases,
    postgresql_only,
    scrub_alchemy_env,
    sqlite_only,
)

APP = """
import os

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

URL_SEEN = os.environ["DATABASE_URL"]
engine = create_engine(URL_SEEN)
Session = sessionmaker(engine)
"""

PARTS_APP = """
import os

from sqlalchemy import URL, create_engine

SEEN = {
    name: os.environ[name]
    for name in ("POSTGRES_SERVER", "POSTGRES_PORT", "POSTGRES_DB", "POSTGRES_USER",
                 "POSTGRES_PASSWORD")
}
engine = create_engine(
    URL.create(
        "postgresql+psycopg",
        username=SEEN["POSTGRES_USER"],
        password=SEEN["POSTGRES_PASSWORD"] or None,
        host=SEEN["POSTGRES_SERVER"],
        port=int(SEEN["POSTGRES_PORT"]),
        database=SEEN["POSTGRES_DB"],
    )
)
"""

RECORD = """
import atexit
import json
import os
from pathlib import Path

NAMES = {names!r}


def record(where):
    seen = {{name: os.environ.get(name) for name in NAMES}}
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    Path(f"seen-{{where}}-{{worker}}.json").write_text(json.dumps(seen))


def _at_exit():
    print("AFTER " + json.dumps({{name: os.environ.get(name) for name in NAMES}}))


atexit.register(_at_exit)
record("root")
"""

CURRENT = """
import json
import os
from pathlib import Path

from sqlalchemy import text

import pytest

import app


@pytest.mark.alchemy_db
def test_app_engine():
    with app.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            found = connection.exec_driver_sql("PRAGMA database_list").all()[0][2]
        else:
            found = connection.scalar(text("SELECT current_database()"))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    Path(f"current-{worker}.json").write_text(json.dumps({
        "database": found,
        "module": os.environ.get("DATABASE_URL") or os.environ.get("POSTGRES_DB"),
    }))
"""


@pytest.fixture(autouse=True)
def _no_app_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    scrub_alchemy_env(
        monkeypatch,
        "DATABASE_URL",
        "POSTGRES_SERVER",
        "POSTGRES_PORT",
        "POSTGRES_DB",
        "POSTGRES_USER",
        "POSTGRES_PASSWORD",
    )


def seen(project: Project, where: str, worker: str = "main") -> dict[str, Any]:
    data = json.loads((project.path / f"seen-{where}-{worker}.json").read_text())
    assert isinstance(data, dict)
    return data


def after(output: str) -> dict[str, Any]:
    """What the variables held once pytest was done (printed at the interpreter's exit)."""
    lines = [line for line in output.splitlines() if line.startswith("AFTER ")]
    assert len(lines) == 1, output
    data = json.loads(lines[0][len("AFTER ") :])
    assert isinstance(data, dict)
    return data


def app_project(project: Project, names: tuple[str, ...], app: str = APP) -> None:
    """The app, imported from the rootdir's conftest, a conftest below it and a test module."""
    project.write("app.py", app)
    project.write("conftest.py", RECORD.format(names=names) + "\nimport app\n")
    project.write(
        "tests/conftest.py",
        "import app\nfrom conftest import record\n\nrecord('below')\n",
    )
    project.write("tests/__init__.py", "")
    project.tests(CURRENT, name="tests/test_app.py")


def test_an_app_that_reads_its_url_at_import_reaches_the_test_database(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.create_app_database()
    monkeypatch.setenv("DATABASE_URL", project.url)  # the developer's own setting: the app db
    app_project(project, ("DATABASE_URL",))
    project.ini("alchemy_env = DATABASE_URL")
    result = project.run()
    result.assert_outcomes(passed=1)
    test_url = project.url_with(project.test_name).render_as_string(hide_password=False)
    assert seen(project, "root")["DATABASE_URL"] == test_url
    assert seen(project, "below")["DATABASE_URL"] == test_url
    current = json.loads((project.path / "current-main.json").read_text())
    assert current["module"] == test_url
    if project.backend == "sqlite":
        assert Path(current["database"]) == project.test_db_path()
    else:
        assert current["database"] == project.test_name
    # restored at exit, and the app database untouched
    assert after(result.stdout.str()) == {"DATABASE_URL": project.url}
    assert project.sql("SELECT count(*) FROM users", project.app_db) == [(3,)]
    header = [line for line in result.outlines if line.startswith("alchemy env:")]
    assert header == [
        f"alchemy env: DATABASE_URL={project.url_with(project.test_name).render_as_string()} "
        "(from ini alchemy_env in pytest.ini); restored at exit"
    ]


@postgresql_only
def test_fastapi_template_parts_build_a_working_url(project: Project) -> None:
    names = (
        "POSTGRES_SERVER",
        "POSTGRES_PORT",
        "POSTGRES_DB",
        "POSTGRES_USER",
        "POSTGRES_PASSWORD",
    )
    app_project(project, names, app=PARTS_APP)
    project.ini(
        """
        alchemy_env =
            POSTGRES_SERVER={host} POSTGRES_PORT={port}
            POSTGRES_DB={database}
            POSTGRES_USER={username} POSTGRES_PASSWORD={password}
        """
    )
    result = project.run()
    result.assert_outcomes(passed=1)
    parts = seen(project, "below")
    assert parts["POSTGRES_DB"] == project.test_name
    assert parts["POSTGRES_USER"] == (project.server_url.username if project.server_url else None)
    current = json.loads((project.path / "current-main.json").read_text())
    assert current["database"] == project.test_name
    assert after(result.stdout.str()) == dict.fromkeys(names)


@postgresql_only
def test_with_a_throwaway_server_the_parts_get_its_tcp_address(project: Project) -> None:
    names = ("DATABASE_URL", "POSTGRES_SERVER", "POSTGRES_PORT", "POSTGRES_DB", "POSTGRES_USER")
    without_password = PARTS_APP.replace('"POSTGRES_PASSWORD")', ")").replace(
        'SEEN["POSTGRES_PASSWORD"] or None', "None"
    )
    app_project(project, names, app=without_password)
    project.tests(
        """
        import os


        def test_one_server(alchemy_database):
            # the server started for the variables is the one the tests run on
            assert int(os.environ["POSTGRES_PORT"]) == int(alchemy_database.url.query["port"])
            assert alchemy_database.url.query["host"] != "127.0.0.1"  # the plugin: its socket
        """,
        name="tests/test_server.py",
    )
    project.ini(
        """
        alchemy_url = postgresql+psycopg:///shop
        alchemy_env = DATABASE_URL POSTGRES_SERVER={host} POSTGRES_PORT={port}
            POSTGRES_DB={database} POSTGRES_USER={username}
        """
    )
    result = project.run("--alchemy-server", "postgresql", url=False)
    result.assert_outcomes(passed=2)
    parts = seen(project, "root")
    assert parts["POSTGRES_SERVER"] == "127.0.0.1"
    port = int(parts["POSTGRES_PORT"])
    assert port > 0
    assert parts["POSTGRES_DB"] == "test_shop"
    assert parts["DATABASE_URL"] == f"postgresql+psycopg://postgres@127.0.0.1:{port}/test_shop"
    current = json.loads((project.path / "current-main.json").read_text())
    assert current["database"] == "test_shop"
    assert after(result.stdout.str()) == dict.fromkeys(names)


@postgresql_only
def test_with_a_throwaway_server_a_bare_url_variable_has_a_host(project: Project) -> None:
    """An app whose settings validate the URL (pydantic's PostgresDsn wants a host) gets
    the server by its TCP address, not by a socket directory in the query."""
    project.write(
        "settings.py",
        """
        import os

        from pydantic import BaseModel, PostgresDsn


        class Settings(BaseModel):
            DATABASE_URL: PostgresDsn


        settings = Settings(DATABASE_URL=os.environ["DATABASE_URL"])
        """,
    )
    project.write("conftest.py", "import settings\n")
    project.tests(
        """
        import sqlalchemy as sa

        from settings import settings


        def test_the_app_reaches_the_test_database(alchemy_database):
            url = sa.make_url(str(settings.DATABASE_URL))
            assert url.host == "127.0.0.1"
            assert url.database == alchemy_database.name
        """
    )
    project.ini("alchemy_url = postgresql+psycopg:///shop\nalchemy_env = DATABASE_URL")
    project.run("--alchemy-server", "postgresql", url=False).assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("configured", "current", "expected"),
    [
        (
            "postgresql+psycopg://me:s3cret@db.invalid/app",
            "postgresql+asyncpg://other@elsewhere/app",
            "postgresql+asyncpg://me:s3cret@db.invalid/test_app",
        ),
        (
            "postgresql+psycopg://me:s3cret@db.invalid/app",
            "postgresql://other@elsewhere/app",
            "postgresql://me:s3cret@db.invalid/test_app",
        ),
        (
            "postgresql+psycopg://me:s3cret@db.invalid/app",
            None,
            "postgresql+psycopg://me:s3cret@db.invalid/test_app",
        ),
        (
            "sqlite:///data/app.db",
            "sqlite+aiosqlite:///other.db",
            "sqlite+aiosqlite:///data/test_app.db",
        ),
        (
            "postgresql+psycopg://me:s3cret@db.invalid/app",
            "sqlite:///other.db",
            "postgresql://me:s3cret@db.invalid/test_app",
        ),
        (
            "sqlite:///data/app.db",
            "postgresql+asyncpg://other@elsewhere/app",
            "sqlite+aiosqlite:///data/test_app.db",
        ),
        (
            "sqlite+aiosqlite:///data/app.db",
            "postgresql+psycopg2://other@elsewhere/app",
            "sqlite:///data/test_app.db",
        ),
    ],
    ids=[
        "async-stays-async",
        "bare-stays-bare",
        "unset-gets-configured",
        "sqlite-async",
        "other-backend-bare",
        "other-backend-async",
        "other-backend-sync",
    ],
)
@sqlite_only
def test_a_bare_name_keeps_the_driver_family_of_its_current_value(
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    configured: str,
    current: str | None,
    expected: str,
) -> None:
    if current is not None:
        monkeypatch.setenv("DATABASE_URL", current)
    project.write("conftest.py", RECORD.format(names=("DATABASE_URL",)))
    project.ini(f"alchemy_url = {configured}\nalchemy_env = DATABASE_URL")
    project.tests("def test_nothing():\n    pass\n")
    result = project.run("--collect-only", url=False)
    assert result.ret == 0, result.stdout.str()
    # A SQLite file is named by its absolute path: apps resolve relative ones elsewhere.
    expected = expected.replace(":///data/", f":///{project.path}/data/")
    assert seen(project, "root")["DATABASE_URL"] == expected
    assert after(result.stdout.str()) == {"DATABASE_URL": current}
    for line in result.outlines:
        if line.startswith("alchemy"):
            assert "s3cret" not in line, line


@sqlite_only
def test_the_password_is_real_in_the_variables_and_masked_in_the_report(
    project: Project,
) -> None:
    project.write("conftest.py", RECORD.format(names=("DATABASE_URL", "DB_PASSWORD")))
    project.ini(
        "alchemy_url = postgresql+psycopg://me:s3cret@db.invalid/app\n"
        "alchemy_env = DATABASE_URL DB_PASSWORD={password}"
    )
    project.tests("def test_nothing():\n    pass\n")
    result = project.run("--collect-only", url=False)
    assert result.ret == 0, result.stdout.str()
    assert seen(project, "root") == {
        "DATABASE_URL": "postgresql+psycopg://me:s3cret@db.invalid/test_app",
        "DB_PASSWORD": "s3cret",
    }
    header = [line for line in result.outlines if line.startswith("alchemy env:")]
    assert header == [
        "alchemy env: DATABASE_URL=postgresql+psycopg://me:***@db.invalid/test_app, "
        "DB_PASSWORD=*** (from ini alchemy_env in pytest.ini); restored at exit"
    ]
    assert "s3cret" not in "\n".join(line for line in result.outlines if "AFTER" not in line)


@pytest.mark.parametrize(
    "template",
    [
        "DATABASE_URL={app_url}",
        "POSTGRES_DB=app",
        "POSTGRES_DB={{database}}_copy",
        "DATABASE_URL=mysql://db.invalid/{{database}}",
    ],
    ids=["url-to-the-app-database", "hard-coded-name", "another-name", "another-backend"],
)
def test_a_template_leading_to_another_database_is_refused(project: Project, template: str) -> None:
    project.create_app_database()
    project.write("conftest.py", RECORD.format(names=("DATABASE_URL", "POSTGRES_DB")))
    entry = template.format(app_url=project.url)
    project.ini(f"alchemy_env = {entry}")
    project.tests("def test_db(alchemy_session):\n    pass\n")
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    errors = result.stderr.str()
    assert "may lead only to the test database" in errors, errors
    assert "seen-root-main.json" not in {path.name for path in project.path.iterdir()}
    # checked out of band: the app database is intact, and no test database was made
    assert project.sql("SELECT count(*) FROM users", project.app_db) == [(3,)]
    assert not project.exists()


@sqlite_only
def test_an_unknown_field_is_one_clear_error(project: Project) -> None:
    project.ini("alchemy_env = DATABASE_URL={dsn}")
    project.tests("def test_nothing():\n    pass\n")
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = result.stderr.str()
    assert "uses the unknown field {dsn}" in errors, errors
    assert "{url}, {sync_url}, {async_url}" in errors
    assert "Traceback" not in errors


@sqlite_only
def test_a_bare_name_whose_value_is_not_a_url_is_one_clear_error(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "not a url")
    project.ini("alchemy_env = DATABASE_URL")
    project.tests("def test_nothing():\n    pass\n")
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = result.stderr.str()
    assert "is already set to 'not a url', which is not a database URL" in errors, errors
    assert "DATABASE_URL={async_url}" in errors
    assert "Traceback" not in errors


def test_each_xdist_worker_gets_its_own_database(project: Project) -> None:
    app_project(project, ("DATABASE_URL",))
    project.tests(
        CURRENT.replace("def test_app_engine", "def test_app_engine_again").replace(
            "current-{worker}", "again-{worker}"
        ),
        name="tests/test_again.py",
    )
    project.ini("alchemy_env = DATABASE_URL")
    result = project.run("-n", "2", "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    names = {}
    for worker in ("gw0", "gw1"):
        url = seen(project, "below", worker)["DATABASE_URL"]
        expected = project.url_with(f"{project.test_name}_{worker}")
        assert url == expected.render_as_string(hide_password=False)
        names[worker] = url
    assert len(set(names.values())) == 2
    header = [line for line in result.outlines if line.startswith("alchemy env:")]
    assert len(header) == 1
    assert header[0].endswith(
        "(each pytest-xdist worker sets them to its own test database); restored at exit"
    )
    # the controller runs no test: it names the test database without a worker suffix
    controller = seen(project, "root", "main")["DATABASE_URL"]
    assert controller == project.url_with(project.test_name).render_as_string(hide_password=False)
    reached = set()
    for path in project.path.glob("*-gw*.json"):
        if path.name.startswith(("current-", "again-")):
            database = json.loads(path.read_text())["database"]
            worker = path.stem.rsplit("-", 1)[1]
            if project.backend == "sqlite":
                assert Path(database) == project.test_db_path(f"{project.test_name}_{worker}")
            else:
                assert database == f"{project.test_name}_{worker}"
            reached.add(worker)
    assert reached, result.stdout.str()
    if project.backend == "postgresql":
        assert project.admin is not None
        assert not {f"{project.test_name}_gw0", f"{project.test_name}_gw1"} & pg_databases(
            project.admin
        )


@sqlite_only
def test_the_sync_and_async_fields_give_each_family(project: Project) -> None:
    names = ("SYNC_URL", "ASYNC_URL", "DB_HOST", "DB_PORT", "DB_DRIVER")
    project.write("conftest.py", RECORD.format(names=names))
    project.ini(
        "alchemy_url = postgresql://me@db.invalid:6543/app\n"
        "alchemy_env = SYNC_URL={sync_url} ASYNC_URL={async_url} DB_HOST={host} "
        "DB_PORT={port} DB_DRIVER={driver}"
    )
    project.tests("def test_nothing():\n    pass\n")
    result = project.run("--collect-only", url=False)
    assert result.ret == 0, result.stdout.str()
    assert seen(project, "root") == {
        "SYNC_URL": "postgresql+psycopg://me@db.invalid:6543/test_app",
        "ASYNC_URL": "postgresql+asyncpg://me@db.invalid:6543/test_app",
        "DB_HOST": "db.invalid",
        "DB_PORT": "6543",
        "DB_DRIVER": "postgresql",
    }


@sqlite_only
def test_a_flag_not_known_while_pytest_starts_cannot_move_the_database(project: Project) -> None:
    project.ini("alchemy_env = DATABASE_URL")
    project.tests("def test_nothing():\n    pass\n")
    result = project.run("--database-uri", project.url, url=False)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = result.stderr.str()
    assert "such as --database-uri" in errors, errors
    assert "Use --alchemy-url" in errors
    assert not project.exists()


@sqlite_only
def test_an_alchemy_url_fixture_leading_elsewhere_fails_the_database_tests(
    project: Project,
) -> None:
    project.write(
        "conftest.py",
        f"""
import pytest


@pytest.fixture(scope="session")
def alchemy_url():
    return "sqlite:///{project.path / "data" / "elsewhere.db"}"
""",
    )
    project.ini("alchemy_env = DATABASE_URL")
    project.tests("def test_db(alchemy_session):\n    pass\n")
    result = project.run()
    result.assert_outcomes(errors=1)
    output = result.stdout.str()
    assert "the app would use another database than the tests" in output, output
    assert not project.test_db_path("test_elsewhere").exists()


@sqlite_only
def test_another_bad_setting_stops_the_run_before_the_app_is_imported(project: Project) -> None:
    project.write("conftest.py", RECORD.format(names=("DATABASE_URL",)))
    project.ini("alchemy_env = DATABASE_URL\nalchemy_leak_check = sometimes")
    project.tests("def test_nothing():\n    pass\n")
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "leak_check = 'sometimes'" in result.stderr.str(), result.stderr.str()
    assert not (project.path / "seen-root-main.json").exists()


@postgresql_only
def test_a_server_started_for_alchemy_env_keeps_its_data_with_reuse_db(project: Project) -> None:
    cache = Path(tempfile.mkdtemp(prefix="pa-cache-", dir="/tmp"))
    cache.chmod(0o755)
    try:
        project.write("conftest.py", RECORD.format(names=("DATABASE_URL",)))
        project.ini(
            f"""
            cache_dir = {cache}
            alchemy_url = postgresql+psycopg:///shop
            alchemy_env = DATABASE_URL
            """
        )
        project.tests(
            """
            import os

            import sqlalchemy as sa


            def test_reused(alchemy_database, alchemy_connection):
                engine = sa.create_engine(os.environ["DATABASE_URL"], poolclass=sa.pool.NullPool)
                with engine.connect() as connection:
                    assert connection.scalar(sa.text("SELECT current_database()")) == "test_shop"
                    data = connection.scalar(sa.text("SHOW data_directory"))
                engine.dispose()
                print(f"REUSED={alchemy_database.reused} DATA={data}")
            """
        )
        args = ("--alchemy-server", "postgresql", "--alchemy-reuse-db", "-s")
        runs = [project.pytester.runpytest_subprocess(*args, timeout=180) for _ in range(2)]
        found = []
        for result in runs:
            result.assert_outcomes(passed=1)
            line = next(line for line in result.outlines if "REUSED=" in line)
            found.append(line[line.index("REUSED=") :].removesuffix("."))
        home = cache / "d" / "alchemy-servers"
        assert found[0].startswith("REUSED=False DATA=" + str(home))
        assert found[1] == found[0].replace("REUSED=False", "REUSED=True")
    finally:
        shutil.rmtree(cache, ignore_errors=True)


@sqlite_only
def test_an_async_app_reaches_the_test_database_through_its_own_driver(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlite+aiosqlite:///somewhere/app.db")
    project.write(
        "app.py",
        """
        import os

        from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

        engine = create_async_engine(os.environ["DATABASE_URL"])
        Session = async_sessionmaker(engine)
        """,
    )
    project.write("conftest.py", "import app\n")
    project.tests(
        """
        import pytest
        from sqlalchemy import text

        import app


        @pytest.mark.asyncio
        @pytest.mark.alchemy_db
        async def test_async_app():
            assert app.engine.url.drivername == "sqlite+aiosqlite"
            async with app.engine.connect() as connection:
                found = (await connection.exec_driver_sql("PRAGMA database_list")).all()
            print("FILE=" + found[0][2])
            await app.engine.dispose()
        """
    )
    project.ini(f"alchemy_url = {project.url}\nalchemy_env = DATABASE_URL")
    result = project.run("-s", url=False)
    result.assert_outcomes(passed=1)
    line = next(line for line in result.outlines if "FILE=" in line)
    assert Path(line.split("FILE=", 1)[1].removesuffix(".")) == project.test_db_path()


@sqlite_only
def test_a_refused_template_does_not_print_the_password(project: Project) -> None:
    project.ini(
        "alchemy_url = postgresql+psycopg://me:s3cret@db.invalid/app\n"
        "alchemy_env = DATABASE_URL=postgresql://me:{password}@db.invalid/app"
    )
    project.tests("def test_nothing():\n    pass\n")
    result = project.run(url=False)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = result.stderr.str()
    assert "may lead only to the test database" in errors, errors
    assert "s3cret" not in errors + result.stdout.str()


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("1DB", "'1DB' does not start with a variable name: give NAME"),
        ("DATABASE_URL DATABASE_URL={url}", "DATABASE_URL is given twice: give each variable once"),
        ("DB_NAME={database", "the template of DB_NAME ('{database') is not a template"),
    ],
    ids=["not-a-name", "twice", "unpaired-brace"],
)
@sqlite_only
def test_a_malformed_entry_is_one_clear_error(
    project: Project, setting: str, expected: str
) -> None:
    project.write("conftest.py", RECORD.format(names=("DATABASE_URL", "DB_NAME")))
    project.ini(f"alchemy_env = {setting}")
    project.tests("def test_db(alchemy_session):\n    pass\n")
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = result.stderr.str()
    assert expected in errors, errors
    assert "Traceback" not in errors
    assert "seen-root-main.json" not in {path.name for path in project.path.iterdir()}
    assert not project.exists()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+psycopg://me@db.invalid/app", {"DB_HOST": "db.invalid", "DB_PORT": "5432"}),
        (
            "postgresql+psycopg://me@/app?host=one.invalid&host=two.invalid&port=5433&port=5434",
            {"DB_HOST": "one.invalid", "DB_PORT": "5433"},
        ),
    ],
    ids=["the-backends-default-port", "the-first-of-several-hosts"],
)
@sqlite_only
def test_the_host_and_port_fields(project: Project, url: str, expected: dict[str, str]) -> None:
    project.write("conftest.py", RECORD.format(names=("DB_HOST", "DB_PORT")))
    project.ini(f"alchemy_url = {url}\nalchemy_env = DB_HOST={{host}} DB_PORT={{port}}")
    project.tests("def test_nothing():\n    pass\n")
    result = project.run("--collect-only", url=False)
    assert result.ret == 0, result.stdout.str()
    assert seen(project, "root") == expected


@sqlite_only
def test_the_port_field_is_empty_for_sqlite(project: Project) -> None:
    project.write("conftest.py", RECORD.format(names=("DB_PORT", "DB_NAME")))
    project.ini("alchemy_env = DB_PORT=[{port}] DB_NAME={database}")
    project.tests("def test_nothing():\n    pass\n")
    result = project.run("--collect-only")
    assert result.ret == 0, result.stdout.str()
    values = seen(project, "root")
    assert values["DB_PORT"] == "[]"
    assert values["DB_NAME"] == str(project.test_db_path())


@postgresql_only
def test_a_server_started_for_a_refused_template_is_stopped(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    temporary = Path(tempfile.mkdtemp(prefix="pa-env-", dir="/tmp"))
    temporary.chmod(0o755)  # the server may run as another user
    try:
        monkeypatch.setenv("TMPDIR", str(temporary))
        project.ini("alchemy_url = postgresql+psycopg:///shop\nalchemy_env = POSTGRES_DB=shop")
        project.tests("def test_db(alchemy_session):\n    pass\n")
        result = project.run("--alchemy-server", "postgresql", url=False)
        assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
        errors = result.stderr.str()
        assert "may lead only to the test database" in errors, errors
        # checked out of band: the server started for the variables is gone with its data
        left = [path.name for path in temporary.glob("pytest-alchemy-*/pg-*")]
        assert left == []
        assert list(temporary.glob("pytest-alchemy-*")), "the server was started in TMPDIR"
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


@sqlite_only
def test_a_name_that_cannot_be_a_file_path_is_compared_as_a_name(project: Project) -> None:
    project.ini(
        "alchemy_url = postgresql+psycopg://me:a%00b@db.invalid/app\n"
        "alchemy_env = DB_NAME={database}{password}"
    )
    project.tests("def test_nothing():\n    pass\n")
    result = project.run(url=False)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = result.stderr.str()
    assert "alchemy_env (from ini alchemy_env in pytest.ini) would set DB_NAME=" in errors, errors
    assert "may lead only to the test database" in errors
    assert "Traceback" not in errors
