"""The template cache: a built schema kept by its fingerprint and copied by later runs;
init SQL before the schema; the app's seeding after it.

Builds are counted out of band: the generated models append a line to ``builds.log``
whenever ``create_all`` really runs on a database (not when the fingerprint renders
the DDL), and templates are read from the server (or the folder) with their records.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import time
from typing import Any

import pytest
import sqlalchemy as sa

from .helpers import MODELS, Project, postgresql_only, scrub_alchemy_env, sqlite_only

COUNTING = """
import os
import time

from sqlalchemy import event
from sqlalchemy.engine import Connection


@event.listens_for(Base.metadata, "before_create")
def _count_build(target, connection, **kw):
    if isinstance(connection, Connection):  # not the fingerprint's mock engine
        with open("builds.log", "a") as log:
            log.write(f"{os.getpid()}\\n")
        time.sleep(float(os.environ.get("SLOW_BUILD", "0")))
"""

EXTRA_COLUMN = """

class Invoice(Base):
    __tablename__ = "invoices"
    id: Mapped[int] = mapped_column(primary_key=True)
    total: Mapped[int] = mapped_column(default=0)
"""

TESTS = """
from sqlalchemy import inspect


def test_tables(alchemy_connection):
    names = set(inspect(alchemy_connection).get_table_names())
    assert {"users", "vendors", "applications"} <= names
"""


def models(extra: str = "") -> str:
    return MODELS + extra + COUNTING


def builds(project: Project) -> int:
    log = project.path / "builds.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def summary_line(result: pytest.RunResult) -> str:
    for line in result.outlines:
        if line.startswith("database ") and " at the end: " in line:
            return line
    raise AssertionError("no summary line:\n" + "\n".join(result.outlines))


def templates(project: Project) -> dict[str, dict[str, Any]]:
    """The templates of the project's test database, with their records, out of band."""
    stem = f"{project.test_name}_tpl_"
    if project.backend == "sqlite":
        found = {}
        for sidecar in (project.path / "data").glob(f"{stem}*.db.alchemy.json"):
            name = sidecar.name[: -len(".db.alchemy.json")]
            found[name] = json.loads(sidecar.read_text())
        return found
    assert project.admin is not None
    with project.admin.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database "
                "WHERE starts_with(datname, :stem)"
            ),
            {"stem": stem},
        ).all()
    return {str(name): json.loads(text) for name, text in rows if text}


@pytest.fixture
def counted(project: Project) -> Project:
    project.write("models.py", models())
    project.tests(TESTS)
    return project


# -- the cache ---------------------------------------------------------------------------


def test_the_second_run_copies_the_template_instead_of_building(counted: Project) -> None:
    project = counted
    first = project.run()
    first.assert_outcomes(passed=1)
    assert builds(project) == 1
    line = summary_line(first)
    assert re.search(r", template [0-9a-f]{8} built in [0-9.]+ s \(no template yet\), ", line)
    found = templates(project)
    assert len(found) == 1
    ((name, record),) = found.items()
    assert record["kind"] == "template"
    assert record["state"] == "clean"
    assert name == f"{project.test_name}_tpl_{record['fingerprint']}"
    assert not project.exists(), "the test database is dropped; the template stays"

    second = project.run()
    second.assert_outcomes(passed=1)
    assert builds(project) == 1, "the second run copied the template"
    short = record["fingerprint"][:8]
    copied = rf"schema copied from template {short} in [0-9.]+ s \(built 1 run ago\)"
    assert re.search(copied, summary_line(second))
    third = project.run()
    assert "built 2 runs ago" in summary_line(third)
    assert builds(project) == 1
    assert templates(project)[name]["uses"] == 3


def test_an_edited_model_rebuilds_with_the_reason(counted: Project) -> None:
    project = counted
    project.run().assert_outcomes(passed=1)
    old = set(templates(project))
    project.write("models.py", models(EXTRA_COLUMN))
    result = project.run()
    result.assert_outcomes(passed=1)
    assert builds(project) == 2
    assert re.search(
        r"template [0-9a-f]{8} built in [0-9.]+ s \(schema changed \(create_all \(4 tables\)\): "
        r"fingerprint [0-9a-f]{8} -> [0-9a-f]{8}\)",
        summary_line(result),
    ), summary_line(result)
    assert len(set(templates(project)) - old) == 1
    # Back to the old models: their template is still there and is copied.
    project.write("models.py", models())
    again = project.run()
    again.assert_outcomes(passed=1)
    assert builds(project) == 2
    assert ", schema copied from template " in summary_line(again)


def test_template_keep_keeps_the_newest(counted: Project) -> None:
    project = counted
    project.ini("alchemy_template_keep = 2")
    names = []
    for index in range(3):
        extra = f"\n\nclass Extra(Base):\n    __tablename__ = 'extra_{index}'\n"
        extra += "    id: Mapped[int] = mapped_column(primary_key=True)\n"
        project.write("models.py", models(extra))
        result = project.run()
        result.assert_outcomes(passed=1)
        names.append(next(n for n in templates(project) if n not in names))
        time.sleep(0.05)
    assert set(templates(project)) == set(names[1:]), "the oldest template is reaped"
    assert f"{names[0]} (old template)" in result.stdout.str()


def test_the_template_cache_can_be_turned_off(counted: Project) -> None:
    project = counted
    project.ini("alchemy_template_cache = false")
    for expected in (1, 2):
        result = project.run()
        result.assert_outcomes(passed=1)
        assert builds(project) == expected
        assert "no template: the template cache is off (alchemy_template_cache = false)" in (
            summary_line(result)
        )
    assert templates(project) == {}


HOOK_WITHOUT_FINGERPRINT = """
def pytest_alchemy_create_schema(connection, database):
    with open("builds.log", "a") as log:
        log.write("hook\\n")
    connection.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY)")
    return True
"""


def test_a_hook_without_fingerprint_builds_every_run_and_says_why(project: Project) -> None:
    project.write("conftest.py", HOOK_WITHOUT_FINGERPRINT)
    project.tests(
        "def test_db(alchemy_connection):\n"
        "    alchemy_connection.exec_driver_sql('SELECT * FROM notes')\n"
    )
    for expected in (1, 2):
        result = project.run("--alchemy-reuse-db")
        result.assert_outcomes(passed=1)
        assert builds(project) == expected
        assert "no template: the schema source has no fingerprint" in summary_line(result)
        assert "alchemy: no template cache: pytest_alchemy_schema_fingerprint gives no " in (
            result.stdout.str()
        )
    assert templates(project) == {}


HOOK_THROUGH_OWN_ENGINE = """
import sqlalchemy as sa


def pytest_alchemy_create_schema(connection, database):
    # As an env.py reading the app's settings would: its own engine, on the test database.
    engine = sa.create_engine(database.url, poolclass=sa.pool.NullPool)
    with engine.begin() as own:
        own.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY)")
    engine.dispose()
    with open("builds.log", "a") as log:
        log.write("hook\\n")
    return True


def pytest_alchemy_schema_fingerprint(config):
    return "v1"
"""


def test_a_schema_built_through_the_test_databases_url_is_kept_and_copied(
    project: Project,
) -> None:
    project.write("conftest.py", HOOK_THROUGH_OWN_ENGINE)
    project.tests(
        "def test_db(alchemy_connection):\n"
        "    alchemy_connection.exec_driver_sql('SELECT * FROM notes')\n"
    )
    for _ in range(2):
        project.run().assert_outcomes(passed=1)
    assert builds(project) == 1
    assert len(templates(project)) == 1


def test_reuse_db_works_on_top_and_is_never_stale(counted: Project) -> None:
    project = counted
    first = project.run("--alchemy-reuse-db")
    first.assert_outcomes(passed=1)
    second = project.run("--alchemy-reuse-db")
    assert ": reused (fingerprint " in summary_line(second)
    assert builds(project) == 1
    project.write("models.py", models(EXTRA_COLUMN))
    changed = project.run("--alchemy-reuse-db")
    changed.assert_outcomes(passed=1)
    assert "schema changed: fingerprint" in summary_line(changed)
    assert builds(project) == 2
    assert "invoices" in set(sa.inspect(project.connect()).get_table_names())
    # create_db rebuilds the template too.
    rebuilt = project.run("--alchemy-reuse-db", "--alchemy-create-db")
    assert "create_db rebuilds the template" in summary_line(rebuilt)
    assert builds(project) == 3


@sqlite_only
def test_sqlite_keeps_the_template_as_a_file_beside_the_test_database(counted: Project) -> None:
    project = counted
    project.run().assert_outcomes(passed=1)
    files = sorted(p.name for p in (project.path / "data").glob("test_app_tpl_*.db"))
    assert len(files) == 1
    engine = sa.create_engine(f"sqlite:///{project.path / 'data' / files[0]}")
    try:
        assert {"users", "vendors", "applications"} <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    project.run().assert_outcomes(passed=1)
    assert builds(project) == 1


def test_concurrent_runs_build_the_template_once(counted: Project) -> None:
    """Two processes that each want their own test database from the same template (as
    the workers of one pytest-xdist run do) start at once: one builds, the other waits
    for it and copies."""
    project = counted
    runs = [
        project.start("-q", SLOW_BUILD="2", PYTEST_XDIST_WORKER=f"gw{index}") for index in range(2)
    ]
    outputs = [run.communicate(timeout=180)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert builds(project) == 1, outputs
    assert len(templates(project)) == 1
    assert not project.exists(f"{project.test_name}_gw0")


def test_the_workers_of_an_xdist_run_share_one_template(counted: Project) -> None:
    project = counted
    project.tests(TESTS + "\n\ndef test_more(alchemy_connection):\n    pass\n")
    result = project.run("-n", "2", "-p", "xdist")
    result.assert_outcomes(passed=2)
    assert builds(project) == 1
    assert len(templates(project)) == 1


def test_a_killed_build_leaves_no_trusted_template(counted: Project) -> None:
    project = counted
    process = project.start("-q", SLOW_BUILD="60")
    try:
        deadline = time.monotonic() + 60
        while builds(project) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert builds(project) == 1
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    left = templates(project)
    assert all(record["state"] == "building" for record in left.values()), left
    result = project.run()
    result.assert_outcomes(passed=1)
    assert builds(project) == 2, "the half-built template was not trusted"
    assert [r["state"] for r in templates(project).values()] == ["clean"]


@postgresql_only
def test_templates_stay_under_the_test_prefix_within_the_name_limit(project: Project) -> None:
    assert project.admin is not None
    project.app_db = "app_with_a_very_long_name_" + "x" * 30 + project.app_db[-6:]
    project.ini("alchemy_test_prefix = mytest_")
    project.tests(TESTS)
    project.run().assert_outcomes(passed=1)
    with project.admin.connect() as connection:
        rows = (
            connection.execute(
                sa.text(
                    "SELECT datname FROM pg_database WHERE shobj_description(oid, 'pg_database') "
                    'LIKE \'%"kind": "template"%\' AND datname LIKE :tail'
                ),
                {"tail": "mytest_app_with_a_very_long%"},
            )
            .scalars()
            .all()
        )
        connection.exec_driver_sql(
            "".join(f'DROP DATABASE "{name}" WITH (FORCE);' for name in rows) or "SELECT 1"
        )
    assert len(rows) == 1
    assert rows[0].startswith("mytest_app_with_a_very_long")
    assert "_tpl_" in rows[0]
    assert len(rows[0].encode()) <= 63


@postgresql_only
def test_a_template_another_session_stays_on_is_a_clear_error(counted: Project) -> None:
    project = counted
    project.run().assert_outcomes(passed=1)
    (template,) = templates(project)
    engine = project.connect(template)
    try:
        with engine.connect():
            result = project.run("--alchemy-lock-timeout=1")
        result.assert_outcomes(errors=1)
        text = result.stdout.str()
        assert f"CREATE DATABASE copies {template}, and other sessions stayed connected" in text
        assert "Traceback" not in text
    finally:
        engine.dispose()
    project.run().assert_outcomes(passed=1)
    assert builds(project) == 1, "the template stayed trusted"


@pytest.mark.postgresql
def test_no_template_on_a_throwaway_server_whose_data_goes_at_exit(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    scrub_alchemy_env(monkeypatch)
    project = Project(pytester, "postgresql")
    project.write("models.py", models())
    project.ini()
    project.tests(TESTS)
    result = project.run("--alchemy-server", "postgresql", url=False)
    result.assert_outcomes(passed=1)
    assert "no template: the throwaway server's data is deleted at exit" in summary_line(result)


# -- init SQL before the schema ------------------------------------------------------------


def test_init_sql_runs_before_create_all(project: Project) -> None:
    """The init SQL creates a table the models also declare: create_all, running after
    it, leaves that table as the init SQL made it."""
    project.ini(
        "alchemy_init_sql =\n"
        "    CREATE TABLE users (id INTEGER PRIMARY KEY, name VARCHAR(50), origin TEXT "
        "DEFAULT 'init')\n"
    )
    project.tests(
        """
        def test_origin(alchemy_connection):
            alchemy_connection.exec_driver_sql("INSERT INTO users (id, name) VALUES (1, 'a')")
            origin = alchemy_connection.exec_driver_sql("SELECT origin FROM users").scalar()
            assert origin == "init"
        """
    )
    project.run().assert_outcomes(passed=1)


ENUM_MODELS = """
from sqlalchemy.dialects.postgresql import ENUM
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Person(Base):
    __tablename__ = "people"
    id: Mapped[int] = mapped_column(primary_key=True)
    mood: Mapped[str] = mapped_column(ENUM("ok", "sad", name="mood", create_type=False))
"""


@postgresql_only
def test_a_type_created_by_init_sql_is_usable_by_the_models(project: Project) -> None:
    project.write("models.py", ENUM_MODELS)
    project.ini("alchemy_init_sql =\n    CREATE TYPE mood AS ENUM ('ok', 'sad')\n")
    project.tests(
        """
        def test_mood(alchemy_connection):
            alchemy_connection.exec_driver_sql("INSERT INTO people (id, mood) VALUES (1, 'sad')")
        """
    )
    project.run().assert_outcomes(passed=1)


# -- seeding ---------------------------------------------------------------------------------

SEED = """
from sqlalchemy.orm import Session

from models import User


def init_db(session: Session) -> None:
    with open("seeds.log", "a") as log:
        log.write("seeded\\n")
    session.add(User(name="admin"))
    session.commit()
"""

SEED_TESTS = """
from sqlalchemy import text


def admins(connection):
    return connection.execute(text("SELECT count(*) FROM users WHERE name = 'admin'")).scalar()


def test_a_sees_the_seed(alchemy_connection):
    assert admins(alchemy_connection) == 1


def test_b_removes_it(alchemy_session):
    alchemy_session.execute(text("DELETE FROM users"))
    alchemy_session.commit()
    assert admins(alchemy_session.connection()) == 0


def test_c_sees_it_again(alchemy_connection):
    assert admins(alchemy_connection) == 1
"""


def seeds(project: Project) -> int:
    log = project.path / "seeds.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_the_apps_seeding_runs_each_run_after_the_schema_and_is_the_baseline(
    counted: Project,
) -> None:
    project = counted
    project.write("seed.py", SEED)
    project.ini("alchemy_seed = seed:init_db")
    project.tests(SEED_TESTS)
    for run in (1, 2):
        result = project.run("-p", "no:randomly", "--alchemy-keep-db")
        result.assert_outcomes(passed=3)
        assert "leak" not in result.stdout.str().replace("0 leaks", "")
        assert seeds(project) == run
        assert project.sql("SELECT name FROM users") == [("admin",)]
    assert builds(project) == 1, "seeding does not stop the template from being copied"
    assert ", seeded by seed:init_db, fingerprint " in summary_line(result)
    (template,) = templates(project)
    assert project.sql("SELECT count(*) FROM users", template) == [(0,)], (
        "seed rows are not part of the template by default"
    )


def test_seed_rows_can_be_part_of_the_template(counted: Project) -> None:
    project = counted
    project.write("seed.py", SEED)
    project.ini("alchemy_seed = seed:init_db\nalchemy_seed_in_template = true")
    project.tests(SEED_TESTS)
    for _ in (1, 2):
        project.run("-p", "no:randomly").assert_outcomes(passed=3)
    assert seeds(project) == 1, "seeded once, into the template"
    (template,) = templates(project)
    assert project.sql("SELECT name FROM users", template) == [("admin",)]
    # Changing the seeding code changes the fingerprint.
    project.write("seed.py", SEED.replace("session.commit()", "session.flush()"))
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(passed=3)
    assert "seeding code changed" in summary_line(result)
    assert seeds(project) == 2


SEED_HOOK = """
def pytest_alchemy_seed(connection):
    connection.exec_driver_sql("INSERT INTO users (id, name) VALUES (100, 'admin')")
"""

ASYNC_SEED = """
from sqlalchemy.ext.asyncio import AsyncSession

from models import User


async def init_db(session: AsyncSession) -> None:
    session.add(User(name="admin"))
"""


ASYNC_CONNECTION_SEED = """
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


async def init_db(connection: AsyncConnection) -> None:
    await connection.execute(text("INSERT INTO users (name) VALUES ('admin')"))
"""

CALLABLE_SEED = """
from models import User


class Seeder:
    def __call__(self, session):
        session.add(User(name="admin"))


init_db = Seeder()
"""


@pytest.mark.parametrize(
    "how", ["hook", "connection", "async", "async-connection", "callable-object"]
)
def test_other_ways_to_seed(counted: Project, how: str) -> None:
    project = counted
    if how == "hook":
        project.write("conftest.py", SEED_HOOK)
    elif how == "connection":
        project.write(
            "seed.py",
            "def init_db(connection):\n"
            "    connection.exec_driver_sql(\"INSERT INTO users (name) VALUES ('admin')\")\n",
        )
        project.ini("alchemy_seed = seed:init_db")
    elif how == "async-connection":
        project.write("seed.py", ASYNC_CONNECTION_SEED)
        project.ini("alchemy_seed = seed:init_db")
    elif how == "callable-object":
        # its source cannot be read: the fingerprint falls back to its qualified name
        project.write("seed.py", CALLABLE_SEED)
        project.ini("alchemy_seed = seed:init_db\nalchemy_seed_in_template = true")
    else:
        project.write("seed.py", ASYNC_SEED)
        project.ini("alchemy_seed = seed:init_db")
    project.tests(SEED_TESTS)
    project.run("-p", "no:randomly").assert_outcomes(passed=3)


@pytest.mark.parametrize("prefix", ["", "async "], ids=["sync", "async"])
def test_a_failing_seed_is_a_clear_error(counted: Project, prefix: str) -> None:
    project = counted
    project.write(
        "seed.py", f"{prefix}def init_db(session):\n    raise RuntimeError('no admin today')\n"
    )
    project.ini("alchemy_seed = seed:init_db")
    result = project.run()
    result.assert_outcomes(errors=1)
    text = result.stdout.str()
    assert "seeding the test database" in text
    assert "seed:init_db failed: RuntimeError: no admin" in text
    assert not project.exists()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "def init_db():\n    pass\n",
            "alchemy_seed = 'seed:init_db' takes no argument; it must take the session",
        ),
        ("init_db = 3\n", "alchemy_seed = 'seed:init_db' names 3, which is not callable"),
    ],
    ids=["no-argument", "not-callable"],
)
def test_a_seed_that_cannot_be_called_is_a_clear_error(
    counted: Project, source: str, expected: str
) -> None:
    project = counted
    project.write("seed.py", source)
    project.ini("alchemy_seed = seed:init_db")
    result = project.run()
    assert result.ret != 0
    text = result.stdout.str() + result.stderr.str()
    assert expected in text, text
    assert "Traceback" not in text
    assert not project.exists()


def test_a_seed_whose_signature_cannot_be_read_gets_the_session(counted: Project) -> None:
    project = counted
    # a builtin: inspect cannot read its parameters, yet it takes one argument
    project.write("seed.py", "init_db = vars\n")
    project.ini("alchemy_seed = seed:init_db")
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(passed=1)
    assert ", seeded by seed:init_db, fingerprint " in summary_line(result)


# -- Alembic -------------------------------------------------------------------------------

COUNTED_MIGRATION = (
    "with open('migrations.log', 'a') as log:\n    log.write('ran\\n')",
    "pass",
)


def test_cached_runs_skip_the_migrations_until_one_changes(project: Project) -> None:
    from .test_alembic import HEAD, USES_DB, alembic_project, write_revision

    alembic_project(project)
    write_revision(project, "ddd444", HEAD, "counted", COUNTED_MIGRATION)
    project.tests(USES_DB)
    log = project.path / "migrations.log"

    def migrations() -> int:
        return len(log.read_text().splitlines()) if log.exists() else 0

    first = project.run()
    first.assert_outcomes(passed=2)
    assert migrations() == 1
    second = project.run()
    second.assert_outcomes(passed=2)
    assert migrations() == 1, "the second run copied the migrated template"
    assert "schema copied from template " in summary_line(second)
    env_py = project.path / "migrations" / "env.py"
    env_py.write_text(env_py.read_text() + "\n# edited\n")
    third = project.run()
    third.assert_outcomes(passed=2)
    assert migrations() == 2
    assert "(schema changed (alembic (head ddd444, 4 revisions)): fingerprint " in (
        summary_line(third)
    )


# -- templates found in a state the run cannot trust ---------------------------------------


def _edit_template(project: Project, **changes: Any) -> str:
    """Rewrite the record of the project's only template (SQLite sidecar) out of band."""
    ((name, record),) = templates(project).items()
    sidecar = project.path / "data" / f"{name}.db.alchemy.json"
    sidecar.write_text(json.dumps({**record, **changes}))
    return name


@sqlite_only
@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"state": "building"}, "its template was left half-built by a run that stopped"),
        ({"fingerprint": "0" * 64}, "its template is not usable"),
    ],
)
def test_an_untrusted_template_is_rebuilt_with_the_reason(
    counted: Project, changes: dict[str, Any], why: str
) -> None:
    project = counted
    project.run().assert_outcomes(passed=1)
    name = _edit_template(project, **changes)
    result = project.run()
    result.assert_outcomes(passed=1)
    assert builds(project) == 2, "the untrusted template was not copied"
    assert f"({why})" in summary_line(result), summary_line(result)
    assert templates(project)[name]["state"] == "clean"
    third = project.run()
    assert builds(project) == 2, "the rebuilt template is trusted again"
    assert ", schema copied from template " in summary_line(third)


@sqlite_only
def test_a_foreign_file_in_the_templates_place_is_replaced(counted: Project) -> None:
    project = counted
    project.run().assert_outcomes(passed=1)
    ((name, _),) = templates(project).items()
    (project.path / "data" / f"{name}.db.alchemy.json").unlink()
    result = project.run()
    result.assert_outcomes(passed=1)
    assert builds(project) == 2
    assert "(replaced a database not made by pytest-alchemy)" in summary_line(result)
    assert templates(project)[name]["state"] == "clean"


@sqlite_only
def test_half_built_templates_of_other_fingerprints_are_reaped_unless_their_run_lives(
    counted: Project,
) -> None:
    from pytest_alchemy.runs import RunIdentity

    project = counted
    project.run().assert_outcomes(passed=1)
    ((name, record),) = templates(project).items()
    data = project.path / "data"
    me = RunIdentity.current().to_dict()
    owners = {"a" * 64: {**me, "pid": 2**22 + 12345}, "b" * 64: me}  # dead, then alive
    stem = f"{project.test_name}_tpl_"
    for fingerprint, owner in owners.items():
        other = f"{stem}{fingerprint}"
        shutil.copyfile(data / f"{name}.db", data / f"{other}.db")
        half = {**record, "state": "building", "fingerprint": None, "owner": owner}
        (data / f"{other}.db.alchemy.json").write_text(json.dumps(half))
    result = project.run()
    result.assert_outcomes(passed=1)
    left = set(templates(project))
    assert f"{stem}{'a' * 64}" not in left, "the dead run's half-built template is reaped"
    assert not (data / f"{stem}{'a' * 64}.db").exists()
    assert f"{stem}{'b' * 64}" in left, "a live run's half-built template stays"
    assert name in left


STAYS_ON_THE_NEW_DATABASE = """

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import Connection

STAYING = []


@event.listens_for(Base.metadata, "after_create")
def _stay(target, connection, **kw):
    if isinstance(connection, Connection):
        engine = sqlalchemy.create_engine(connection.engine.url)
        STAYING.append(engine.connect())
"""


@postgresql_only
def test_a_template_that_cannot_be_copied_costs_the_run_only_the_template(
    project: Project,
) -> None:
    project.write("models.py", models(STAYS_ON_THE_NEW_DATABASE))
    project.tests(TESTS)
    project.ini("alchemy_lock_timeout = 1")
    result = project.run()
    result.assert_outcomes(passed=1)
    line = summary_line(result)
    assert re.search(
        r"schema built in [0-9.]+ s \(no template yet\), not kept as a template: \S", line
    ), line
    assert "other sessions stayed connected to" in line
    assert templates(project) == {}, "no half-copied template is left"
    assert builds(project) == 1
