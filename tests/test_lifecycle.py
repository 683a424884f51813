"""The test database's life: its name, build, drop or keep, reuse, reaping and conflicts.

Each scenario runs pytest on a generated project in a subprocess, then checks the
server (or the file system) out of band: whether the test database exists, which
tables it has, and the record pytest-alchemy keeps with it. The tests inside the
generated project write what they saw to ``observed.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
import sqlalchemy.dialects.postgresql
import sqlalchemy.dialects.sqlite
from sqlalchemy.engine import Connection, make_url

from pytest_alchemy import processes, servers
from pytest_alchemy.database import DatabaseManager, Heartbeat, Lifecycle
from pytest_alchemy.errors import RunConflictError, SchemaError
from pytest_alchemy.provision import Record, provisioner_for
from pytest_alchemy.runs import STALE_AFTER, RunIdentity, _boot_id, pid_exists, process_start
from pytest_alchemy.schema import HookSchema, NoSchema, SchemaSource
from pytest_alchemy.urls import bounded_name, derive_name

from .helpers import MODELS, Project, pg_databases, postgresql_only, sqlite_only

# Imported at collection, before any test runs: pytester drops the modules first
# imported during a test, and a second import of a SQLAlchemy dialect or driver makes
# SQLAlchemy warn and leaves two copies of the driver's exception classes.
PRELOADED = (psycopg, sqlalchemy.dialects.postgresql, sqlalchemy.dialects.sqlite)

SUMMARY = re.compile(
    r"^database (?P<name>\S+) on (?P<backend>\w+) .*?: (?P<status>built|reused) "
    r"\((?P<reason>.*)\) in [0-9.]+ s, .*fingerprint (?P<fingerprint>\S+); "
    r"at the end: (?P<end>.+)$"
)

OBSERVE = """
import json
from pathlib import Path

from sqlalchemy import func, inspect, select

from models import User


def test_observe(alchemy_session, alchemy_database):
    alchemy_session.add(User(name="written by the test"))
    alchemy_session.commit()
    connection = alchemy_session.connection()
    Path("observed.json").write_text(json.dumps({
        "name": alchemy_database.name,
        "created": alchemy_database.created,
        "reused": alchemy_database.reused,
        "tables": sorted(inspect(connection).get_table_names()),
        "current": connection.exec_driver_sql(
            "SELECT current_database()" if connection.dialect.name == "postgresql" else "SELECT 1"
        ).scalar(),
    }))


def test_isolated(alchemy_session):
    assert alchemy_session.scalar(select(func.count()).select_from(User)) == 0
"""

APP_TABLES = {"applications", "users", "vendors"}


def summary(result: pytest.RunResult) -> dict[str, str]:
    """The fields of the ``alchemy`` terminal summary line about the test database."""
    for line in result.outlines:
        found = SUMMARY.match(line)
        if found:
            return found.groupdict()
    raise AssertionError("no alchemy summary line in the output:\n" + "\n".join(result.outlines))


def reaped_names(result: pytest.RunResult) -> list[str]:
    """The databases the run's summary says it reaped."""
    prefix = "reaped databases left by dead runs: "
    lines = [line for line in result.outlines if line.startswith(prefix)]
    assert len(lines) <= 1
    return lines[0][len(prefix) :].split(", ") if lines else []


def observed(project: Project) -> dict[str, Any]:
    path = project.path / "observed.json"
    data = json.loads(path.read_text())
    path.unlink()
    assert isinstance(data, dict)
    return data


def run_on(project: Project, database: str, *args: str) -> pytest.RunResult:
    """Run the project with its URL naming the app database ``database``."""
    url = project.url_with(database).render_as_string(hide_password=False)
    return project.run("--alchemy-url", url, *args, url=False)


def tables(project: Project, name: str | None = None) -> set[str]:
    engine = project.connect(name)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def record(project: Project, name: str | None = None) -> dict[str, Any] | None:
    """The record pytest-alchemy keeps with a test database, read out of band."""
    name = name or project.test_name
    if project.backend == "sqlite":
        sidecar = Path(str(project.test_db_path(name)) + ".alchemy.json")
        text = sidecar.read_text() if sidecar.exists() else None
    else:
        assert project.admin is not None
        with project.admin.connect() as connection:
            text = connection.execute(
                sa.text(
                    "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                    "WHERE datname = :name"
                ),
                {"name": name},
            ).scalar()
    return json.loads(text) if text else None


def create_unmanaged(project: Project, name: str, table: str) -> None:
    """Create a database ``name`` with one row in ``table``, as someone other than the plugin."""
    if project.backend == "postgresql":
        assert project.admin is not None
        with project.admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    else:
        project.test_db_path(name).parent.mkdir(parents=True, exist_ok=True)
    project.sql(f"CREATE TABLE {table} (x integer)", name)
    project.sql(f"INSERT INTO {table} VALUES (1)", name)


# -- naming -----------------------------------------------------------------------------------


def test_derive_name() -> None:
    assert derive_name("app", "test_") == derive_name("app", "test_", worker=None)
    assert derive_name("app", "test_").name == "test_app"
    assert derive_name("app", "test_").derived
    assert derive_name("test_x", "test_").name == "test_x"
    assert not derive_name("test_x", "test_").derived
    assert derive_name("app", "test_", worker="gw1").name == "test_app_gw1"
    assert derive_name("test_x", "test_", worker="gw0").name == "test_x_gw0"
    assert derive_name("app", "ci_").name == "ci_app"
    assert derive_name(None, "test_").name == "test_alchemy"


def test_long_names_fit_the_limit_and_stay_unique() -> None:
    first, second = "a" * 69 + "1", "a" * 69 + "2"
    names = {
        derive_name(base, "test_", worker=w).name
        for base in (first, second)
        for w in (None, "gw0", "gw1")
    }
    assert len(names) == 6
    for name in names:
        assert len(name.encode()) <= 63
        assert name.startswith("test_aaaa")
    # Multi-byte characters are never cut in half.
    cut = bounded_name("test_" + "é" * 40, 63)
    assert len(cut.encode()) <= 63
    cut.encode().decode()
    assert bounded_name("short", 63) == "short"


def test_the_test_database_is_named_after_the_app_database_with_the_worker(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    project.tests(OBSERVE)
    result = project.run("--alchemy-keep-db")
    result.assert_outcomes(passed=2)
    expected = f"{project.test_name}_gw1"
    seen = observed(project)
    assert seen["name"] == expected
    assert summary(result)["name"] == expected
    assert project.exists(expected)
    assert not project.exists(project.test_name)
    assert tables(project, expected) >= APP_TABLES
    if project.backend == "sqlite":
        assert project.test_db_path(expected) == project.path / "data" / "test_app_gw1.db"
        assert project.test_db_path(expected).is_file()
    else:
        assert seen["current"] == expected


def test_a_url_naming_a_test_database_uses_that_database(project: Project) -> None:
    name = f"test_{project.app_db}_direct"
    project.tests(OBSERVE)
    result = run_on(project, name, "--alchemy-keep-db")
    result.assert_outcomes(passed=2)
    assert observed(project)["name"] == name
    assert project.exists(name)
    assert not project.exists(f"test_{name}")
    assert tables(project, name) >= APP_TABLES
    # And it is dropped at the end of a plain run: the guard lets a 'test' URL database be.
    result = run_on(project, name)
    result.assert_outcomes(passed=2)
    assert summary(result)["end"] == "dropped"
    assert not project.exists(name)


@postgresql_only
def test_postgresql_names_are_kept_within_63_bytes(project: Project) -> None:
    app = f"{project.app_db}_" + "x" * 70
    app = app[:70]
    assert len(app) == 70
    project.tests(OBSERVE)
    result = run_on(project, app)
    result.assert_outcomes(passed=2)
    seen = observed(project)
    name = seen["name"]
    assert len(name.encode()) <= 63
    assert name.startswith(f"test_{project.app_db}_")
    assert name == derive_name(app, "test_").name
    assert seen["current"] == name  # created on the server under exactly that name
    assert summary(result)["end"] == "dropped"
    assert project.admin is not None
    assert name not in pg_databases(project.admin)


@sqlite_only
def test_in_memory_sqlite_is_one_shared_database_and_leaves_no_file(project: Project) -> None:
    project.tests(
        """
        from sqlalchemy import func, inspect, select, text
        from models import User

        def test_shared(alchemy_connection, alchemy_engine, alchemy_database):
            assert alchemy_database.name == "test_memory"
            # A second connection sees the schema: one shared database, not one per connection.
            with alchemy_engine.connect() as other:
                assert {"users", "vendors", "applications"} <= set(inspect(other).get_table_names())
            alchemy_connection.execute(User.__table__.insert().values(name="x"))
            assert alchemy_connection.scalar(select(func.count()).select_from(User)) == 1

        def test_isolated(alchemy_connection):
            assert alchemy_connection.scalar(select(func.count()).select_from(User)) == 0
        """
    )
    before = set(project.path.rglob("*"))
    result = project.run("--alchemy-url", "sqlite://", url=False)
    result.assert_outcomes(passed=2)
    line = summary(result)
    assert (line["name"], line["status"], line["end"]) == ("test_memory", "built", "dropped")
    created = {
        path.relative_to(project.path)
        for path in set(project.path.rglob("*")) - before
        if "__pycache__" not in path.parts and not path.parts[-1].startswith("runpytest")
    }
    assert {path.parts[0] for path in created} <= {"stdout", "stderr", "runpytest-0"}
    assert not [path for path in created if "test_memory" in str(path) or path.suffix == ".db"]


@sqlite_only
def test_an_unwritable_sqlite_location_is_a_clear_error(project: Project) -> None:
    blocker = project.path / "blocker.txt"
    blocker.write_text("a file, so no directory can be created below it")
    project.tests(
        """
        def test_needs_db(alchemy_connection):
            pass
        """
    )
    result = project.run("--alchemy-url", f"sqlite:///{blocker}/app.db", url=False)
    result.assert_outcomes(errors=1)
    output = result.stdout.str()
    assert f"cannot create the SQLite test databases in {blocker}: " in output
    assert "Point alchemy_url at a writable place" in output
    assert "Traceback" not in output
    assert "pytest_alchemy/" not in output
    assert blocker.read_text().startswith("a file")


# -- drop, keep, reuse --------------------------------------------------------------------------


def test_dropped_by_default_kept_with_keep_db_and_recreated_next_run(project: Project) -> None:
    project.tests(OBSERVE)

    result = project.run()
    result.assert_outcomes(passed=2)
    seen = observed(project)
    assert (seen["name"], seen["created"], seen["reused"]) == (project.test_name, True, False)
    assert set(seen["tables"]) >= APP_TABLES
    line = summary(result)
    assert (line["status"], line["reason"], line["end"]) == ("built", "new database", "dropped")
    assert not project.exists()

    result = project.run("--alchemy-keep-db")
    result.assert_outcomes(passed=2)
    assert summary(result)["end"] == "kept"
    assert project.exists()
    if project.backend == "sqlite":  # data/app.db leads to data/test_app.db
        assert (project.path / "data" / "test_app.db").is_file()
        assert not (project.path / "data" / "app.db").exists()
    assert tables(project) >= APP_TABLES
    assert project.sql("SELECT count(*) FROM users") == [(0,)]  # the test's commit was undone
    kept = record(project)
    assert kept is not None
    assert (kept["kind"], kept["state"], kept["owner"]) == ("kept", "clean", None)
    project.sql("CREATE TABLE marker (x integer)")

    result = project.run()
    result.assert_outcomes(passed=2)
    line = summary(result)
    assert (line["status"], line["reason"], line["end"]) == (
        "built",
        "reuse_db is off",
        "dropped",
    )
    assert "marker" not in observed(project)["tables"]
    assert not project.exists()


def test_reuse_db_reuses_until_the_schema_changes_or_create_db(project: Project) -> None:
    project.tests(OBSERVE)

    result = project.run("--alchemy-reuse-db")
    result.assert_outcomes(passed=2)
    line = summary(result)
    assert (line["status"], line["reason"], line["end"]) == (
        "built",
        "new database",
        "kept for reuse",
    )
    first = line["fingerprint"]
    kept = record(project)
    assert kept is not None
    assert (kept["kind"], kept["state"], kept["fingerprint"]) == ("reuse", "clean", first)
    assert project.sql("SELECT count(*) FROM users") == [(0,)]
    project.sql("CREATE TABLE marker (x integer)")

    result = project.run("--alchemy-reuse-db")
    result.assert_outcomes(passed=2)
    line = summary(result)
    assert line["status"] == "reused"
    assert f"fingerprint {first} matches" in line["reason"]
    seen = observed(project)
    assert (seen["created"], seen["reused"]) == (False, True)
    assert "marker" in seen["tables"]
    assert project.sql("SELECT count(*) FROM users") == [(0,)]

    result = project.run("--alchemy-reuse-db", "--alchemy-create-db")
    result.assert_outcomes(passed=2)
    line = summary(result)
    assert (line["status"], line["reason"]) == ("built", "create_db")
    assert "marker" not in observed(project)["tables"]
    assert project.exists()

    project.sql("CREATE TABLE marker (x integer)")
    project.write(
        "models.py",
        MODELS.replace(
            "name: Mapped[str] = mapped_column(String(50))\n",
            "name: Mapped[str] = mapped_column(String(50))\n"
            "    email: Mapped[str | None] = mapped_column(String(80))\n",
            1,
        ),
    )
    result = project.run("--alchemy-reuse-db")
    result.assert_outcomes(passed=2)
    line = summary(result)
    second = line["fingerprint"]
    assert second != first
    assert (line["status"], line["reason"]) == (
        "built",
        f"schema changed: fingerprint {first} -> {second}",
    )
    assert "marker" not in observed(project)["tables"]
    engine = project.connect()
    try:
        columns = {column["name"] for column in sa.inspect(engine).get_columns("users")}
    finally:
        engine.dispose()
    assert columns == {"id", "name", "email"}

    result = project.run("--alchemy-reuse-db", "--alchemy-drop-db")
    result.assert_outcomes(passed=2)
    line = summary(result)
    assert (line["status"], line["end"]) == ("reused", "dropped")
    assert not project.exists()


def _trigram_available(project: Project) -> bool:
    if project.admin is None:
        return False
    with project.admin.connect() as connection:
        return bool(
            connection.exec_driver_sql(
                "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_trgm'"
            ).scalar()
        )


def test_init_sql_runs_once_and_is_part_of_the_fingerprint(project: Project) -> None:
    statements = ["CREATE TABLE seeded (x integer)", "INSERT INTO seeded VALUES (1)"]
    trigram = _trigram_available(project)
    if trigram:
        statements.append("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    project.ini("alchemy_init_sql =\n" + "".join(f"    {s}\n" for s in statements))
    project.tests(
        """
        from sqlalchemy import text

        def test_seeded(alchemy_connection):
            assert alchemy_connection.scalar(text("SELECT count(*) FROM seeded")) >= 1
        """
    )

    result = project.run("--alchemy-reuse-db")
    result.assert_outcomes(passed=1)
    first = summary(result)
    assert first["status"] == "built"
    assert project.sql("SELECT x FROM seeded") == [(1,)]
    if trigram:
        assert project.sql("SELECT extname FROM pg_extension WHERE extname = 'pg_trgm'") == [
            ("pg_trgm",)
        ]
    project.sql("INSERT INTO seeded VALUES (2)")

    result = project.run("--alchemy-reuse-db")
    result.assert_outcomes(passed=1)
    assert summary(result)["status"] == "reused"
    assert sorted(project.sql("SELECT x FROM seeded")) == [(1,), (2,)]  # not run again

    project.ini(
        "alchemy_init_sql =\n"
        + "".join(f"    {s}\n" for s in [*statements, "CREATE TABLE seeded_more (y integer)"])
    )
    result = project.run("--alchemy-reuse-db")
    result.assert_outcomes(passed=1)
    line = summary(result)
    assert line["status"] == "built"
    assert line["reason"].startswith("schema changed: fingerprint")
    assert line["fingerprint"] != first["fingerprint"]
    assert project.sql("SELECT x FROM seeded") == [(1,)]
    assert "seeded_more" in tables(project)


def test_a_failing_init_statement_is_a_clear_error_and_leaves_nothing(project: Project) -> None:
    project.ini("alchemy_init_sql = CREATE TABLE broken (")
    project.tests(
        """
        def test_needs_db(alchemy_connection):
            pass
        """
    )
    result = project.run("--alchemy-keep-db")
    result.assert_outcomes(errors=1)
    output = result.stdout.str()
    assert "the init SQL statement 'CREATE TABLE broken (' failed" in output
    assert "Traceback" not in output
    assert not project.exists()


def test_an_existing_test_database_not_made_by_the_plugin_is_replaced(project: Project) -> None:
    project.create_app_database(rows=3)
    create_unmanaged(project, project.test_name, "legacy")
    project.tests(OBSERVE)
    result = project.run("--alchemy-keep-db")
    result.assert_outcomes(passed=2)
    line = summary(result)
    assert (line["status"], line["reason"]) == (
        "built",
        "replaced an existing database not created by pytest-alchemy",
    )
    assert "legacy" not in observed(project)["tables"]
    assert "legacy" not in tables(project)
    assert project.sql("SELECT count(*) FROM users", project.app_db) == [(3,)]


# -- crashed runs and runs still going ---------------------------------------------------------

KILLED = """
import os
import signal

from models import User


def test_killed(alchemy_session):
    alchemy_session.add(User(name="x"))
    alchemy_session.commit()
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_runs_database_is_reaped_by_the_next_run_kept_ones_are_not(
    project: Project,
) -> None:
    killed, kept, reused, other = (
        project.app_db,
        f"{project.app_db}_kept",
        f"{project.app_db}_reused",
        f"{project.app_db}_other",
    )
    # Databases kept by earlier runs, which no run may reap.
    project.tests(OBSERVE)
    run_on(project, kept, "test_app.py", "--alchemy-keep-db").assert_outcomes(passed=2)
    run_on(project, reused, "test_app.py", "--alchemy-reuse-db").assert_outcomes(passed=2)
    assert project.exists(f"test_{kept}")
    assert project.exists(f"test_{reused}")

    project.tests(KILLED, name="test_killed.py")
    result = run_on(project, killed, "test_killed.py")
    assert result.ret == -signal.SIGKILL
    orphan = f"test_{killed}"
    assert project.exists(orphan)
    left = record(project, orphan)
    assert left is not None
    assert (left["kind"], left["state"]) == ("run", "in_use")
    owner = RunIdentity.from_dict(left["owner"])
    assert owner is not None
    assert not owner.is_alive()

    result = run_on(project, other, "test_app.py")
    result.assert_outcomes(passed=2)
    names = reaped_names(result)
    assert orphan in names
    assert f"test_{kept}" not in names
    assert f"test_{reused}" not in names
    assert not project.exists(orphan)
    assert project.exists(f"test_{kept}")
    assert project.exists(f"test_{reused}")
    if project.backend == "sqlite":
        leftovers = sorted(path.name for path in (project.path / "data").iterdir())
        assert not [name for name in leftovers if name.startswith(orphan + ".")], leftovers

    # The same name is reaped and then built afresh.
    assert run_on(project, killed, "test_killed.py").ret == -signal.SIGKILL
    result = run_on(project, killed, "test_app.py")
    result.assert_outcomes(passed=2)
    assert orphan in reaped_names(result)
    line = summary(result)
    assert (line["status"], line["reason"], line["end"]) == ("built", "new database", "dropped")
    assert not project.exists(orphan)


def test_a_database_held_by_a_live_run_is_refused_and_left_alone(project: Project) -> None:
    create_unmanaged(project, project.test_name, "precious")
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        owner = RunIdentity(
            host=socket.gethostname(),
            boot_id=_boot_id(),
            pid=sleeper.pid,
            started=process_start(sleeper.pid),
        )
        assert owner.is_alive()
        held = Record(kind="run", state="in_use", owner=owner, fingerprint="f")
        backend = provisioner_for(make_url(project.url), "test_", lock_timeout=5)
        try:
            backend.write_record(project.test_name, held)
        finally:
            backend.close()
        before = record(project)
        assert before is not None

        project.tests(OBSERVE)
        result = project.run()
        result.assert_outcomes(errors=2)
        output = result.stdout.str()
        assert "is in use by another pytest run that is still alive" in output
        assert f"pid {sleeper.pid} on {owner.host}" in output
        assert "Traceback" not in output
        assert project.exists()
        assert project.sql("SELECT count(*) FROM precious") == [(1,)]
        assert record(project) == before
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


# -- the manager on its own (SQLite files, in process) --------------------------------------------


class Failing(NoSchema):
    """A schema source whose build is interrupted."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def build(self, connection: Connection) -> None:
        connection.exec_driver_sql("CREATE TABLE half_built (x integer)")
        raise self.error


def manager(folder: Path, schema: SchemaSource | None = None, **lifecycle: bool) -> DatabaseManager:
    url = make_url(f"sqlite:///{folder / 'app.db'}")
    backend = provisioner_for(url, "test_", lock_timeout=5)
    return DatabaseManager(
        backend, "test_app", lifecycle=Lifecycle(**lifecycle), schema=schema or NoSchema()
    )


def dead_run() -> RunIdentity:
    """This process's identity with another start time: a run that died, its pid reused."""
    return dataclasses.replace(RunIdentity.current(), started="1")


def test_a_database_whose_reusing_run_died_is_rebuilt_not_reaped(tmp_path: Path) -> None:
    first = manager(tmp_path, reuse=True)
    first.setup()
    assert first.teardown() == "kept for reuse"
    backend = first.provisioner
    record = backend.read_record("test_app")
    assert record is not None
    backend.write_record("test_app", record.with_(state="in_use", owner=dead_run()))

    second = manager(tmp_path, reuse=True)
    info = second.setup()
    try:
        assert info.reaped == []  # kept for reuse: never reaped, even when its run died
        assert (info.created, info.reason) == (
            True,
            "the previous run using it did not finish",
        )
    finally:
        second.teardown()
        second.provisioner.close()


def test_a_database_kept_for_inspection_is_not_reused(tmp_path: Path) -> None:
    first = manager(tmp_path, keep=True)
    first.setup()
    assert first.teardown() == "kept"
    first.provisioner.close()
    second = manager(tmp_path, reuse=True)
    info = second.setup()
    assert (info.created, info.reason) == (
        True,
        "the previous run did not keep it for reuse",
    )
    assert second.teardown() == "kept for reuse"
    second.provisioner.close()


def test_a_schema_without_fingerprint_is_never_reused(tmp_path: Path) -> None:
    unknown = HookSchema(builder=lambda connection: None, fingerprinter=lambda: None)
    for expected in ("new database", "the schema source has no fingerprint"):
        run = manager(tmp_path, unknown, reuse=True)
        info = run.setup()
        assert (info.created, info.reused, info.reason) == (True, False, expected)
        run.teardown()
        run.provisioner.close()


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_a_build_that_fails_or_is_interrupted_leaves_no_database(
    tmp_path: Path, error: BaseException
) -> None:
    run = manager(tmp_path, Failing(error), keep=True)
    with pytest.raises(SchemaError if isinstance(error, Exception) else KeyboardInterrupt):
        run.setup()
    assert not (tmp_path / "test_app.db").exists()
    # Only the lock file of the template build stays: it is empty, and removing a lock
    # file another run may be waiting on would let two runs hold the lock.
    left = sorted(path.name for path in tmp_path.iterdir())
    assert [name for name in left if not name.endswith(".lock")] == []
    assert run.teardown() == "nothing to do"


def test_reaping_spares_live_kept_and_unrecorded_databases(tmp_path: Path) -> None:
    backend = provisioner_for(make_url(f"sqlite:///{tmp_path / 'app.db'}"), "test_", lock_timeout=5)
    for name, kind, owner in (
        ("test_dead", "run", dead_run()),
        ("test_mine", "run", RunIdentity.current()),
        ("test_kept", "kept", dead_run()),
        ("test_reused", "reuse", dead_run()),
        ("test_ownerless", "run", None),
    ):
        backend.create(name, Record(kind=kind, state="in_use", owner=owner))
    (tmp_path / "test_plain.db").write_bytes(b"")
    run = manager(tmp_path)
    assert run.reap() == ["test_dead"]
    left = sorted(path.name for path in tmp_path.glob("*.db"))
    assert left == [
        "test_kept.db",
        "test_mine.db",
        "test_ownerless.db",
        "test_plain.db",
        "test_reused.db",
    ]


# -- runs on other machines: the heartbeat ----------------------------------------------------


def elsewhere(heartbeat: float) -> RunIdentity:
    """A run on another machine sharing the server, last seen at ``heartbeat``."""
    return RunIdentity(host="ci-runner-7", boot_id="b", pid=4242, started="9", heartbeat=heartbeat)


def test_a_run_on_another_machine_is_alive_while_its_heartbeat_is_fresh(tmp_path: Path) -> None:
    backend = provisioner_for(make_url(f"sqlite:///{tmp_path / 'app.db'}"), "test_", lock_timeout=5)
    now = time.time()
    backend.create("test_recent", Record(kind="run", state="in_use", owner=elsewhere(now - 5)))
    stale = now - STALE_AFTER - 60
    backend.create("test_silent", Record(kind="run", state="in_use", owner=elsewhere(stale)))
    run = manager(tmp_path)
    assert run.reap() == ["test_silent"]
    assert sorted(path.name for path in tmp_path.glob("*.db")) == ["test_recent.db"]
    backend.close()

    # Its database is refused while it lives, naming the run and when it was last seen.
    held = DatabaseManager(
        provisioner_for(make_url(f"sqlite:///{tmp_path / 'app.db'}"), "test_", lock_timeout=5),
        "test_recent",
        lifecycle=Lifecycle(),
        schema=NoSchema(),
    )
    with pytest.raises(RunConflictError) as caught:
        held.setup()
    text = str(caught.value)
    assert "is in use by another pytest run that is still alive" in text
    assert "pid 4242 on ci-runner-7 (last seen " in text
    held.provisioner.close()


def test_a_live_run_refreshes_its_heartbeat_in_its_own_record_only(tmp_path: Path) -> None:
    run = manager(tmp_path)
    run.setup()
    backend = run.provisioner
    try:
        first = backend.read_record("test_app")
        assert first is not None
        assert first.owner is not None
        heartbeat = Heartbeat(run, every=0.01)
        heartbeat.start()
        deadline = time.monotonic() + 10
        while True:
            record = backend.read_record("test_app")
            assert record is not None
            assert record.owner is not None
            if record.owner.heartbeat > first.owner.heartbeat:
                break
            assert time.monotonic() < deadline, "no heartbeat within 10 s"
            time.sleep(0.01)
        heartbeat.stop()
        assert record.owner == first.owner  # the same run, seen later

        # A record that another run has taken over since is left alone.
        other = elsewhere(time.time())
        backend.write_record("test_app", record.with_(owner=other))
        run.beat()
        taken = backend.read_record("test_app")
        assert taken is not None
        assert taken.owner is not None
        assert (taken.owner, taken.owner.heartbeat) == (other, other.heartbeat)
    finally:
        run.teardown()
        backend.close()


def test_malformed_owner_records_name_no_run() -> None:
    # A database comment or sidecar someone else wrote is not a record of ours.
    for foreign in ("", "scratch database, ask Bob", '["pytest-alchemy"]', '{"tool": "other"}'):
        assert Record.from_json(foreign) is None
    assert RunIdentity.from_dict({"host": "h", "boot_id": "b", "pid": "x", "started": ""}) is None
    assert RunIdentity.from_dict({"host": "h"}) is None
    assert RunIdentity.from_dict(["h", "b", 1, ""]) is None
    record = Record.from_json(json.dumps({"tool": "pytest-alchemy", "owner": {"pid": 1}}))
    assert record is not None
    assert record.owner is None
    assert not record.held_by_live_run()


def test_processes_that_are_gone_or_not_ours() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert process_start(gone.pid) == ""
    assert not RunIdentity(socket.gethostname(), _boot_id(), gone.pid, "1").is_alive()
    # A run that exited but was not collected by its parent yet (a zombie, common under
    # a container's init that does not reap) is dead: it will never clean up.
    exited = subprocess.Popen(["sleep", "0.2"])
    identity = RunIdentity(socket.gethostname(), _boot_id(), exited.pid, process_start(exited.pid))
    assert identity.is_alive()
    deadline = time.monotonic() + 10
    while not processes.exited(exited.pid):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert pid_exists(exited.pid)
    assert not identity.is_alive()
    exited.wait()
    for impossible in (0, -1):
        assert not pid_exists(impossible)
    # Another user's process cannot be signalled, but it is alive all the same.
    if os.geteuid() == 0:
        os.setresuid(65534, 65534, 0)  # the saved uid lets the test become root again
        try:
            assert pid_exists(1)
        finally:
            os.setresuid(0, 0, 0)
    else:
        assert pid_exists(1)


# -- creating databases on a busy server ------------------------------------------------------


@pytest.mark.postgresql
def test_a_session_briefly_on_the_template_delays_the_creation_without_failing_it(
    pg_server: sa.URL, pg_admin: sa.Engine
) -> None:
    """``CREATE DATABASE`` copies template1 and fails while anyone is connected to it.

    PostgreSQL itself waits five seconds for such sessions; pytest-alchemy keeps
    retrying within the lock timeout, so a session that lingers a little longer
    (a monitoring probe, another tool's admin connection) does not fail the run.
    """
    holder = psycopg.connect(
        pg_server.set(drivername="postgresql", database="template1").render_as_string(
            hide_password=False
        )
    )
    release = threading.Timer(6.5, holder.close)
    release.start()
    backend = provisioner_for(pg_server.set(database="app"), "test_", lock_timeout=30)
    name = f"test_app_template_busy_{os.getpid()}"
    started = time.monotonic()
    try:
        backend.create(name, Record(kind="run", state="in_use", owner=RunIdentity.current()))
        assert time.monotonic() - started > 6, "created while template1 was still in use"
        assert backend.exists(name)
    finally:
        release.cancel()
        holder.close()
        backend.drop(name)
        backend.close()
    assert name not in pg_databases(pg_admin)


ONE_DATABASE_TEST = """
def test_db(alchemy_connection):
    pass
"""


@postgresql_only
def test_a_session_that_stays_on_the_template_is_named(project: Project, pg_server: sa.URL) -> None:
    """Past the lock timeout, the error names the sessions keeping template1 busy."""
    holder = psycopg.connect(
        pg_server.set(drivername="postgresql", database="template1").render_as_string(
            hide_password=False
        ),
        application_name="left-open-tool",
    )
    try:
        project.tests(ONE_DATABASE_TEST)
        result = project.run("--alchemy-lock-timeout", "1")
        pid = holder.info.backend_pid
    finally:
        holder.close()
    result.assert_outcomes(errors=1)
    text = result.stdout.str()
    assert "CREATE DATABASE copies template1" in text
    assert f"pid {pid} (left-open-tool), idle since" in text
    assert "alchemy_lock_timeout (1 s)" in text
    assert "pytest_alchemy/" not in text
    assert not project.exists()


@pytest.mark.postgresql
def test_a_server_without_the_postgres_database_is_administered_from_template1() -> None:
    """Without a ``postgres`` database the plugin administers the server from template1:
    its own connection there does not keep CREATE DATABASE from copying template1."""
    try:
        server = servers.start_server("postgresql")
    except servers.errors.ServerError as error:
        pytest.skip(f"PostgreSQL is not available: {error}")
    try:
        url = server.url.set(drivername="postgresql+psycopg")
        template1 = url.set(drivername="postgresql", database="template1").render_as_string(
            hide_password=False
        )
        with psycopg.connect(template1, autocommit=True) as admin:
            admin.execute("ALTER DATABASE postgres RENAME TO postgres_away")
        backend = provisioner_for(url.set(database="app"), "test_", lock_timeout=5)
        name = "test_app_from_template1"
        try:
            backend.create(name, Record(kind="run", state="in_use", owner=RunIdentity.current()))
            assert backend.exists(name)
        finally:
            backend.drop(name)
            backend.close()
        with psycopg.connect(template1, autocommit=True) as admin:
            found = admin.execute("SELECT datname FROM pg_database").fetchall()
        assert (name,) not in found
    finally:
        server.stop()
