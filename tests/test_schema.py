"""The schema: create_all with foreign-key cycles, and the fingerprint that decides reuse."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import psycopg
import pytest
import sqlalchemy as sa
import sqlalchemy.dialects.postgresql
import sqlalchemy.dialects.sqlite
from sqlalchemy.engine import make_url

from pytest_alchemy.schema import CreateAll, HookSchema, NoSchema, ddl_statements

from .helpers import MODELS, Project, sqlite_only

# Imported at collection, before any test runs: pytester drops the modules first
# imported during a test, and a second import of a SQLAlchemy dialect or driver makes
# SQLAlchemy warn and leaves two copies of the driver's exception classes.
PRELOADED = (psycopg, sqlalchemy.dialects.postgresql, sqlalchemy.dialects.sqlite)

SQLITE = make_url("sqlite:///app.db")
POSTGRESQL = make_url("postgresql+psycopg://localhost/app")


def load_models(tmp_path: Path, source: str = MODELS, name: str = "cycle_models") -> ModuleType:
    """Import ``source`` as a fresh module (a new MetaData each time)."""
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    module = ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module  # the models' string annotations are resolved through it
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)
    finally:
        del sys.modules[name]
    return module


@pytest.fixture
def models(tmp_path: Path) -> ModuleType:
    return load_models(tmp_path)


# -- fingerprint --------------------------------------------------------------------------------


def test_the_fingerprint_follows_the_ddl_and_the_init_sql(
    tmp_path: Path, models: ModuleType
) -> None:
    source = CreateAll((models.Base.metadata,))
    same = CreateAll((load_models(tmp_path, name="again").Base.metadata,))
    changed = CreateAll(
        (
            load_models(
                tmp_path,
                MODELS.replace(
                    "name: Mapped[str] = mapped_column(String(50))\n",
                    "name: Mapped[str] = mapped_column(String(50))\n"
                    "    email: Mapped[str | None] = mapped_column(String(80))\n",
                    1,
                ),
                name="changed",
            ).Base.metadata,
        )
    )
    first = source.fingerprint(POSTGRESQL, ())
    assert first is not None
    assert len(first) == 16
    assert source.fingerprint(POSTGRESQL, ()) == first
    assert same.fingerprint(POSTGRESQL, ()) == first
    assert changed.fingerprint(POSTGRESQL, ()) != first
    assert source.fingerprint(SQLITE, ()) != first  # the DDL of another dialect
    with_init = source.fingerprint(POSTGRESQL, ("CREATE EXTENSION pg_trgm",))
    assert with_init != first
    # Init statements run in order, so their order counts.
    assert source.fingerprint(POSTGRESQL, ("A", "B")) != source.fingerprint(POSTGRESQL, ("B", "A"))
    # Only the database name differs: same schema, same fingerprint.
    assert source.fingerprint(POSTGRESQL.set(database="other"), ()) == first


def test_the_fingerprint_does_not_depend_on_string_hashing(tmp_path: Path) -> None:
    """SQLAlchemy orders the constraints that close a cycle by set iteration order.

    A fingerprint taken in one interpreter must equal the one taken in the next,
    or reuse_db would rebuild at random.
    """
    (tmp_path / "cycle_models.py").write_text(MODELS)
    script = textwrap.dedent(
        """
        import sys
        from sqlalchemy.engine import make_url
        from pytest_alchemy.schema import CreateAll
        import cycle_models

        source = CreateAll((cycle_models.Base.metadata,))
        for url in sys.argv[1:]:
            print(source.fingerprint(make_url(url), ("SELECT 1",)))
        """
    )
    urls = [url.render_as_string() for url in (POSTGRESQL, SQLITE)]
    found = set()
    for seed in ("1", "2", "3"):
        done = subprocess.run(
            [sys.executable, "-c", script, *urls],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(tmp_path)},
            check=True,
            timeout=60,
        )
        found.add(tuple(done.stdout.split()))
    assert len(found) == 1, found
    assert len(next(iter(found))) == 2


def test_other_schema_sources_fingerprint() -> None:
    none = NoSchema()
    assert none.fingerprint(SQLITE, ()) == NoSchema().fingerprint(POSTGRESQL, ())
    assert none.fingerprint(SQLITE, ("CREATE TABLE t (x int)",)) != none.fingerprint(SQLITE, ())
    hooked = HookSchema(builder=lambda connection: None, fingerprinter=lambda: "v1")
    assert hooked.fingerprint(SQLITE, ()) == HookSchema(lambda c: None, lambda: "v1").fingerprint(
        SQLITE, ()
    )
    assert hooked.fingerprint(SQLITE, ()) != HookSchema(lambda c: None, lambda: "v2").fingerprint(
        SQLITE, ()
    )
    assert HookSchema(lambda c: None, lambda: None).fingerprint(SQLITE, ()) is None


# -- foreign-key cycles ---------------------------------------------------------------------------


def test_cycles_need_no_use_alter(tmp_path: Path) -> None:
    # A fresh copy of the models for each dialect: SQLAlchemy marks the constraints
    # it once emitted as ALTER statements, and leaves them out of CREATE TABLE after.
    models = load_models(tmp_path, name="for_postgresql")
    statements = ddl_statements([models.Base.metadata], POSTGRESQL)
    creates = [s for s in statements if s.startswith("CREATE TABLE")]
    alters = [s for s in statements if s.startswith("ALTER TABLE")]
    assert len(creates) == 3
    assert sorted(alter.split()[2] for alter in alters) == ["applications", "vendors"]
    assert all("FOREIGN KEY" in alter for alter in alters)
    # Built for real on SQLite, where the constraints stay inside CREATE TABLE.
    models = load_models(tmp_path, name="for_sqlite")
    engine = sa.create_engine("sqlite://")
    with engine.begin() as connection:
        CreateAll((models.Base.metadata,)).build(connection)
        inspector = sa.inspect(connection)
        assert {fk["referred_table"] for fk in inspector.get_foreign_keys("vendors")} == {
            "applications"
        }
        assert {fk["referred_table"] for fk in inspector.get_foreign_keys("applications")} == {
            "vendors"
        }
    engine.dispose()


LINKED_ROWS = """
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from models import Application, Vendor


def test_linked_rows(alchemy_session):
    vendor = Vendor(name="acme")
    alchemy_session.add(vendor)
    alchemy_session.flush()
    application = Application(vendor_id=vendor.id)
    alchemy_session.add(application)
    alchemy_session.flush()
    vendor.featured_id = application.id
    alchemy_session.commit()
    alchemy_session.expire_all()
    loaded = alchemy_session.scalars(select(Vendor)).one()
    assert loaded.featured_id == application.id
    assert alchemy_session.get(Application, application.id).vendor_id == loaded.id


def test_constraints_are_enforced(alchemy_connection, alchemy_database):
    insert = text("INSERT INTO applications (id, vendor_id) VALUES (1, 999)")
    if alchemy_database.backend == "sqlite":
        alchemy_connection.execute(insert)
        check = "PRAGMA foreign_key_check(applications)"
        violations = alchemy_connection.exec_driver_sql(check).all()
        assert [row[2] for row in violations] == ["vendors"]
    else:
        with pytest.raises(IntegrityError):
            with alchemy_connection.begin_nested():
                alchemy_connection.execute(insert)
"""


def foreign_keys(project: Project) -> set[tuple[str, str]]:
    """(table, referred table) of every foreign key in the kept test database, out of band."""
    if project.backend == "postgresql":
        rows = project.sql(
            "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint "
            "WHERE contype = 'f'"
        )
        return {(str(a), str(b)) for a, b in rows}
    found = set()
    for table in ("users", "vendors", "applications"):
        for row in project.sql(f"PRAGMA foreign_key_list({table})"):
            found.add((table, str(row[2])))
    return found


def test_a_schema_with_a_cycle_is_built_and_dropped_cleanly(project: Project) -> None:
    project.tests(LINKED_ROWS)
    result = project.run("--alchemy-keep-db")
    result.assert_outcomes(passed=2)
    assert foreign_keys(project) == {("vendors", "applications"), ("applications", "vendors")}
    assert project.sql("SELECT count(*) FROM vendors") == [(0,)]
    result = project.run()
    result.assert_outcomes(passed=2)
    assert "reuse_db is off" in result.stdout.str()
    assert not project.exists()


# -- schema sources other than create_all ------------------------------------------------

HOOK_CONFTEST = """
import os


def pytest_alchemy_create_schema(connection, database):
    connection.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    connection.exec_driver_sql("CREATE TABLE built_for (name TEXT)")
    connection.exec_driver_sql(f"INSERT INTO built_for (name) VALUES ('{database.name}')")
    return True


def pytest_alchemy_schema_fingerprint(config):
    return os.environ.get("SCHEMA_VERSION", "v1")
"""

HOOK_TESTS = """
def test_the_hook_built_the_schema(alchemy_connection, alchemy_database):
    names = alchemy_connection.exec_driver_sql("SELECT name FROM built_for").scalars().all()
    assert names == [alchemy_database.name]
    alchemy_connection.exec_driver_sql("INSERT INTO notes (id, body) VALUES (1, 'x')")
    assert alchemy_database.schema == "hook"


def test_isolated(alchemy_connection):
    assert alchemy_connection.exec_driver_sql("SELECT count(*) FROM notes").scalar() == 0
"""


def test_the_schema_hook_builds_and_its_fingerprint_decides_reuse(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.ini("alchemy_schema = hook")
    project.write("conftest.py", HOOK_CONFTEST)
    project.tests(HOOK_TESTS)
    first = project.run("--alchemy-reuse-db", "-p", "no:randomly")
    first.assert_outcomes(passed=2)
    assert "schema=hook (ini alchemy_schema in pytest.ini)" in first.stdout.str()
    tables = {name for (name,) in project.sql(TABLES[project.backend])}
    assert tables == {"notes", "built_for"}, "the hook's tables only, not the models'"

    again = project.run("--alchemy-reuse-db")
    again.assert_outcomes(passed=2)
    assert "reused" in again.stdout.str()

    monkeypatch.setenv("SCHEMA_VERSION", "v2")
    changed = project.run("--alchemy-reuse-db")
    changed.assert_outcomes(passed=2)
    assert "built (schema changed: fingerprint" in changed.stdout.str()


@sqlite_only
def test_an_implemented_schema_hook_is_used_without_the_setting(project: Project) -> None:
    project.write("conftest.py", HOOK_CONFTEST)
    project.tests(HOOK_TESTS)
    result = project.run("--alchemy-keep-db", "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    text = result.stdout.str()
    assert "schema=hook (a conftest implements pytest_alchemy_create_schema)" in text
    assert ", schema hook, template " in text
    tables = {name for (name,) in project.sql(TABLES[project.backend])}
    assert tables == {"notes", "built_for"}, "the hook's tables, not the models'"


def test_the_hook_schema_needs_the_hook(project: Project) -> None:
    project.ini("alchemy_schema = hook")
    project.tests("def test_db(alchemy_connection):\n    pass\n")
    result = project.run()
    result.assert_outcomes(errors=1)
    text = result.stdout.str()
    assert "no conftest.py implements pytest_alchemy_create_schema" in text
    assert "alchemy_schema = create_all" in text


NO_SCHEMA_TESTS = """
def test_the_database_is_used_as_it_is(alchemy_connection, alchemy_database):
    assert alchemy_database.schema == "none"
    rows = alchemy_connection.exec_driver_sql("SELECT count(*) FROM kept").scalar()
    assert rows == 1
"""


def test_schema_none_builds_nothing(project: Project) -> None:
    project.ini(
        """
        alchemy_schema = none
        alchemy_init_sql =
            CREATE TABLE kept (id INTEGER PRIMARY KEY)
            INSERT INTO kept (id) VALUES (1)
        """
    )
    project.tests(NO_SCHEMA_TESTS)
    result = project.run("--alchemy-keep-db")
    result.assert_outcomes(passed=1)
    assert {name for (name,) in project.sql(TABLES[project.backend])} == {"kept"}


TABLES = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table'",
    "postgresql": "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
}
