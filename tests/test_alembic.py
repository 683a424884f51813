"""Alembic as the schema source, the downgrade check and the migration checks.

Each project gets a real Alembic environment made by ``alembic init`` (the generic or
the async template, unmodified but for its target metadata), three revisions, and
models that match them. Results are checked out of band: the version table and the
tables of the test database, and what happened to the app's own database.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from pytest_alchemy.alembic_schema import AlembicSchema, find_config

from .helpers import Project, failure_reports, postgresql_only, sqlite_only

MODELS = """
from __future__ import annotations

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    email: Mapped[str | None] = mapped_column(String(100))


class Post(Base):
    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(String(200))
"""

REVISION = '''
"""{message}"""
import sqlalchemy as sa
from alembic import op

revision = {revision!r}
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade():
{upgrade}


def downgrade():
{downgrade}
'''

USERS = (
    "op.create_table('users', sa.Column('id', sa.Integer(), primary_key=True),\n"
    "    sa.Column('name', sa.String(50), nullable=False))",
    "op.drop_table('users')",
)
POSTS = (
    "op.create_table('posts', sa.Column('id', sa.Integer(), primary_key=True),\n"
    "    sa.Column('user_id', sa.Integer(), sa.ForeignKey('users.id'), nullable=False),\n"
    "    sa.Column('title', sa.String(200), nullable=False))",
    "op.drop_table('posts')",
)
EMAIL = (
    "op.add_column('users', sa.Column('email', sa.String(100), nullable=True))",
    "with op.batch_alter_table('users') as batch:\n    batch.drop_column('email')",
)
CHAIN = (
    ("aaa111", None, "users", USERS),
    ("bbb222", "aaa111", "posts", POSTS),
    ("ccc333", "bbb222", "email", EMAIL),
)
HEAD = "ccc333"

SHARED_ENV = """
from alembic import context
from sqlalchemy import engine_from_config, pool

import models

config = context.config
target_metadata = models.Base.metadata


def run_migrations_online():
    connectable = config.attributes.get("connection")
    if connectable is None:
        connectable = engine_from_config(
            config.get_section(config.config_ini_section, {}),
            prefix="sqlalchemy.",
            poolclass=pool.NullPool,
        ).connect()
    context.configure(connection=connectable, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
"""

USES_DB = """
from sqlalchemy import text


def test_users(alchemy_session):
    alchemy_session.execute(text("INSERT INTO users (name, email) VALUES ('ada', 'a@b.c')"))
    assert alchemy_session.execute(text("SELECT count(*) FROM users")).scalar() == 1


def test_posts(alchemy_session):
    assert alchemy_session.execute(text("SELECT count(*) FROM posts")).scalar() == 0
"""


def write_revision(
    project: Project, revision: str, down: str | None, name: str, steps: tuple[str, str]
) -> Path:
    upgrade, downgrade = (textwrap.indent(step, "    ") for step in steps)
    source = REVISION.format(
        message=name, revision=revision, down=down, upgrade=upgrade, downgrade=downgrade
    )
    path = project.path / "migrations" / "versions" / f"{revision}_{name}.py"
    path.write_text(source)
    return path


def alembic_project(project: Project, template: str = "generic", env: str | None = None) -> None:
    """``alembic init`` in the project, the chain of three revisions, matching models."""
    config = Config(str(project.path / "alembic.ini"))
    command.init(config, str(project.path / "migrations"), template=template)
    env_py = project.path / "migrations" / "env.py"
    if env is not None:
        env_py.write_text(textwrap.dedent(env))
    else:
        source = env_py.read_text()
        assert "target_metadata = None" in source
        env_py.write_text(
            source.replace(
                "target_metadata = None", "import models\ntarget_metadata = models.Base.metadata"
            )
        )
    project.write("models.py", MODELS)
    for revision, down, name, steps in CHAIN:
        write_revision(project, revision, down, name, steps)


def tables(project: Project, name: str | None = None) -> set[str]:
    with project.connect(name).connect() as connection:
        return set(sa.inspect(connection).get_table_names())


def version(project: Project, name: str | None = None) -> list[str]:
    with project.connect(name).connect() as connection:
        return list(connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars())


# -- upgrade head once per run ------------------------------------------------------------


def test_upgrade_head_runs_on_the_test_database(project: Project) -> None:
    alembic_project(project)
    project.tests(USES_DB)
    result = project.run("--alchemy-keep-db")
    result.assert_outcomes(passed=2)
    output = result.stdout.str()
    assert "schema=alembic (head ccc333, 3 revisions) (alembic.ini found in the rootdir)" in output
    assert "schema alembic (head ccc333, 3 revisions)" in output
    assert version(project) == [HEAD]
    assert tables(project) == {"alembic_version", "users", "posts"}
    # The app's own database (the URL alembic.ini and the plugin's setting name) is untouched.
    assert not project.exists(project.app_db)


@sqlite_only
def test_an_env_py_that_uses_the_shared_connection(project: Project) -> None:
    alembic_project(project, env=SHARED_ENV)
    project.tests(USES_DB)
    result = project.run("--alchemy-keep-db")
    result.assert_outcomes(passed=2)
    assert version(project) == [HEAD]
    assert not project.exists(project.app_db)


ASYNC_TESTS = """
import pytest
from sqlalchemy import text


@pytest.fixture
async def seeded(alchemy_async_session):
    await alchemy_async_session.execute(text("INSERT INTO users (name) VALUES ('ada')"))


async def test_users(seeded, alchemy_async_session):
    result = await alchemy_async_session.execute(text("SELECT count(*) FROM users"))
    assert result.scalar() == 1
"""


def test_the_async_template_works_unmodified(project: Project) -> None:
    """``alembic init -t async``: asyncio.run() in env.py, with the async driver's URL,
    while the schema is built for an async fixture."""
    alembic_project(project, template="async")
    project.ini("asyncio_mode = auto")
    project.tests(ASYNC_TESTS)
    result = project.run("--alchemy-keep-db")
    result.assert_outcomes(passed=1)
    assert version(project) == [HEAD]
    assert tables(project) == {"alembic_version", "users", "posts"}


@sqlite_only
def test_without_a_configuration_create_all_builds_the_schema(project: Project) -> None:
    project.write("models.py", MODELS)
    project.tests(USES_DB)
    result = project.run("--alchemy-keep-db")
    result.assert_outcomes(passed=2)
    assert "schema=create_all (default)" in result.stdout.str()
    assert "alembic_version" not in tables(project)


@sqlite_only
def test_create_all_can_still_be_chosen_in_an_alembic_project(project: Project) -> None:
    alembic_project(project)
    project.tests(USES_DB)
    result = project.run("--alchemy-keep-db", "--alchemy-schema", "create_all")
    result.assert_outcomes(passed=2)
    assert "alembic.ini found" not in result.stdout.str()
    assert "alembic_version" not in tables(project)


@sqlite_only
def test_alembic_config_elsewhere(project: Project) -> None:
    alembic_project(project)
    (project.path / "alembic.ini").rename(project.path / "db.ini")
    project.ini("alchemy_alembic_config = db.ini")
    project.tests(USES_DB)
    result = project.run("--alchemy-keep-db")
    result.assert_outcomes(passed=2)
    assert "(alembic_config from ini alchemy_alembic_config" in result.stdout.str()
    assert version(project) == [HEAD]


@sqlite_only
def test_pyproject_tool_alembic_is_found(project: Project) -> None:
    alembic_project(project)
    (project.path / "alembic.ini").unlink()
    project.write(
        "pyproject.toml",
        '[tool.alembic]\nscript_location = "%(here)s/migrations"\nprepend_sys_path = ["."]\n',
    )
    project.tests(USES_DB)
    result = project.run("--alchemy-keep-db")
    result.assert_outcomes(passed=2)
    assert "[tool.alembic] found in pyproject.toml" in result.stdout.str()
    assert version(project) == [HEAD]


# -- the fingerprint ----------------------------------------------------------------------


def test_the_fingerprint_follows_migrations_and_env_py(project: Project) -> None:
    alembic_project(project)
    url = sa.make_url("sqlite:///test_app.db")

    def fingerprint() -> str | None:
        location = find_config(project.path, None, "default")
        assert location is not None
        return AlembicSchema(location, url).fingerprint(url, ())

    first = fingerprint()
    assert first is not None
    assert len(first) == 16
    assert fingerprint() == first
    cache = project.path / "migrations" / "versions" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "aaa111_users.cpython-311.pyc").write_bytes(b"compiled")
    assert fingerprint() == first
    location = find_config(project.path, None, "default")
    assert location is not None
    assert AlembicSchema(location, url).fingerprint(url, ("CREATE TABLE x (y int)",)) != first
    env_py = project.path / "migrations" / "env.py"
    env_py.write_text(env_py.read_text() + "\n# edited\n")
    edited_env = fingerprint()
    assert edited_env != first
    migration = project.path / "migrations" / "versions" / "bbb222_posts.py"
    migration.write_text(migration.read_text().replace("String(200)", "String(250)"))
    assert fingerprint() not in (first, edited_env)


@sqlite_only
def test_reuse_db_reuses_until_a_migration_changes(project: Project) -> None:
    alembic_project(project)
    project.tests(USES_DB)
    first = project.run("--alchemy-reuse-db")
    first.assert_outcomes(passed=2)
    assert ": built (new database)" in first.stdout.str()
    # Out of band: a marker row that survives only if the database is reused.
    with project.connect().begin() as connection:
        connection.exec_driver_sql("CREATE TABLE marker (x INTEGER)")
    second = project.run("--alchemy-reuse-db")
    second.assert_outcomes(passed=2)
    assert ": reused (fingerprint" in second.stdout.str()
    assert "marker" in tables(project)
    migration = project.path / "migrations" / "versions" / "ccc333_email.py"
    migration.write_text(migration.read_text().replace("String(100)", "String(120)"))
    third = project.run("--alchemy-reuse-db")
    third.assert_outcomes(passed=2)
    assert ": built (schema changed: fingerprint" in third.stdout.str()
    assert "marker" not in tables(project)
    assert version(project) == [HEAD]


# -- errors -------------------------------------------------------------------------------

OTHER_URL_ENV = """
from alembic import context
from sqlalchemy import create_engine

import models

OTHER = {other!r}


def run_migrations_online():
    with create_engine(OTHER).connect() as connection:
        context.configure(connection=connection, target_metadata=models.Base.metadata)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
"""


def test_an_env_py_that_hard_codes_another_database(project: Project) -> None:
    other = project.url_with("app_other")
    if project.backend == "postgresql":
        assert project.admin is not None
        with project.admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{project.app_db}_other"')
        other = project.url_with(f"{project.app_db}_other")
    alembic_project(
        project, env=OTHER_URL_ENV.format(other=other.render_as_string(hide_password=False))
    )
    project.tests(USES_DB)
    result = project.run()
    result.assert_outcomes(errors=2)
    reports = failure_reports(result.stdout.str())
    assert "migrations/env.py connected to" in reports
    assert "instead of the test database" in reports
    assert 'config.attributes["connection"]' in reports
    assert "No migration was run" in reports
    # Nothing was written to that other database.
    if project.backend == "sqlite":
        name = "app_other"
        assert tables(project, name) == set()
    else:
        assert tables(project, f"{project.app_db}_other") == set()
    assert not project.exists()


REPLACED_URL_ENV = """
from alembic import context
from sqlalchemy import engine_from_config, pool

import models

config = context.config
config.set_main_option("sqlalchemy.url", {other!r}.replace("%", "%%"))


def run_migrations_online():
    section = config.get_section(config.config_ini_section, {{}})
    engine = engine_from_config(section, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=models.Base.metadata)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
"""


def test_an_env_py_that_replaces_the_url_with_one_it_cannot_reach(project: Project) -> None:
    # The app's own database name, hard-coded in env.py, and absent where the tests run:
    # connecting fails before env.py configures Alembic.
    if project.backend == "sqlite":
        other = sa.make_url(f"sqlite:///{project.path / 'missing' / 'app.db'}")
    else:
        other = project.url_with(f"{project.app_db}_absent")
    alembic_project(
        project, env=REPLACED_URL_ENV.format(other=other.render_as_string(hide_password=False))
    )
    project.tests(USES_DB)
    result = project.run()
    result.assert_outcomes(errors=2)
    reports = failure_reports(result.stdout.str())
    assert "migrations/env.py, line 14 failed with OperationalError" in reports
    assert f"It had set sqlalchemy.url to {other.render_as_string()}" in reports
    assert "nothing was written to the test database" in reports
    assert "alchemy_schema = create_all" in reports
    assert not project.exists()


@sqlite_only
def test_multiple_heads_are_named(project: Project) -> None:
    alembic_project(project)
    write_revision(project, "ddd444", "bbb222", "tags", ("op.create_table('tags')", "pass"))
    project.tests(USES_DB)
    result = project.run()
    result.assert_outcomes(errors=2)
    reports = failure_reports(result.stdout.str())
    assert "the migrations have 2 heads" in reports
    assert "ccc333 (migrations/versions/ccc333_email.py)" in reports
    assert "ddd444 (migrations/versions/ddd444_tags.py)" in reports
    assert "alembic merge heads" in reports
    assert not project.exists()


def test_a_failing_migration_is_named_with_its_file_and_line(project: Project) -> None:
    alembic_project(project)
    write_revision(
        project, "ccc333", "bbb222", "email", ("op.execute('SELECT nonsense FROM nowhere')", "pass")
    )
    (project.path / "migrations" / "versions" / "ccc333_email.py").rename(
        project.path / "migrations" / "versions" / "ccc333_broken.py"
    )
    (project.path / "migrations" / "versions" / "ccc333_email.py").unlink(missing_ok=True)
    project.tests(USES_DB)
    result = project.run()
    result.assert_outcomes(errors=2)
    reports = failure_reports(result.stdout.str())
    assert (
        "the upgrade() of revision ccc333 (migrations/versions/ccc333_broken.py, line 13) failed"
        in reports
    )
    assert "nowhere" in reports
    assert "Traceback" not in reports
    assert not project.exists()


@sqlite_only
def test_a_missing_script_location_is_named(project: Project) -> None:
    alembic_project(project)
    config = project.path / "alembic.ini"
    config.write_text(
        re.sub(
            r"(?m)^script_location = .*$", "script_location = %(here)s/nowhere", config.read_text()
        )
    )
    project.tests(USES_DB)
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stderr.str()
    assert output.count("the script_location") == 1
    assert "nowhere" in output
    assert "does not exist" in output
    assert not project.exists()


@sqlite_only
def test_a_configured_alembic_config_that_does_not_exist(project: Project) -> None:
    project.ini("alchemy_alembic_config = missing.ini")
    project.tests(USES_DB)
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "alembic_config = 'missing.ini'" in result.stderr.str()


@sqlite_only
def test_alembic_schema_without_a_configuration(project: Project) -> None:
    project.write("models.py", MODELS)
    project.tests(USES_DB)
    result = project.run("--alchemy-schema", "alembic")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "no Alembic configuration was found" in result.stderr.str()


@sqlite_only
def test_without_alembic_installed_the_error_names_the_extra(project: Project) -> None:
    alembic_project(project)
    # Loaded before the plugin configures: alembic cannot be imported in this run.
    project.write("no_alembic.py", "import sys\n\nsys.modules['alembic'] = None\n")
    project.tests(USES_DB)
    result = project.run("-p", "no_alembic")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stderr.str()
    assert "alembic is not installed" in output
    assert "pytest-alchemy[alembic]" in output
    assert "alchemy_schema = create_all" in output
    # A run whose tests need no database is not stopped by it.
    project.tests("def test_nothing():\n    pass\n")
    project.run("-p", "no_alembic").assert_outcomes(passed=1)


# -- the downgrade check ------------------------------------------------------------------


def test_the_downgrade_check_passes_on_a_good_chain(project: Project) -> None:
    alembic_project(project)
    project.ini("alchemy_downgrade_check = true")
    project.tests(USES_DB)
    result = project.run("--alchemy-keep-db", "-v")
    result.assert_outcomes(passed=3)
    lines = [line for line in result.stdout.lines if "PASSED" in line]
    assert "alembic.ini::alembic_downgrade_check PASSED" in lines[-1]
    # Kept for inspection: at the head again after the downgrade.
    assert version(project) == [HEAD]


def test_a_downgrade_that_leaves_a_table_fails_the_check(project: Project) -> None:
    alembic_project(project)
    tags = "op.create_table('tags', sa.Column('id', sa.Integer(), primary_key=True))"
    write_revision(project, "ddd444", "ccc333", "tags", (tags, "pass"))
    project.ini("alchemy_downgrade_check = true")
    project.tests(USES_DB)
    result = project.run()
    result.assert_outcomes(passed=2, failed=1)
    reports = failure_reports(result.stdout.str())
    assert "alembic_downgrade_check" in reports
    assert "left the tables tags behind" in reports
    assert "Traceback" not in reports
    assert not project.exists()


@sqlite_only
def test_a_failing_downgrade_names_its_revision(project: Project) -> None:
    alembic_project(project)
    write_revision(project, "bbb222", "aaa111", "posts", (POSTS[0], "op.drop_table('nothing')"))
    project.ini("alchemy_downgrade_check = true")
    project.tests(USES_DB)
    result = project.run()
    result.assert_outcomes(passed=2, failed=1)
    reports = failure_reports(result.stdout.str())
    assert (
        "the downgrade() of revision bbb222 (migrations/versions/bbb222_posts.py, line" in reports
    )
    assert "nothing" in reports


# -- the migration checks -----------------------------------------------------------------


def check_names(result: pytest.RunResult, outcome: str) -> set[str]:
    return {
        line.split("::")[1].split()[0]
        for line in result.stdout.lines
        if line.startswith("alembic.ini::") and outcome in line
    }


ALL_CHECKS = {"alembic_single_head", "alembic_upgrade", "alembic_roundtrip", "alembic_drift"}


def test_the_migration_checks_pass_on_a_good_chain(project: Project) -> None:
    alembic_project(project)
    project.ini("alchemy_migration_checks = true")
    project.tests("def test_nothing():\n    pass\n")
    result = project.run("-v")
    result.assert_outcomes(passed=5)
    assert check_names(result, "PASSED") == ALL_CHECKS
    # Their database is dropped, the shared one never made (no test asked for it).
    assert not project.exists(f"{project.test_name}_migrations")
    assert not project.exists()


@sqlite_only
def test_some_checks_only_and_k_selects_them(project: Project) -> None:
    alembic_project(project)
    project.ini("alchemy_migration_checks = single_head, drift")
    project.tests("def test_nothing():\n    pass\n")
    result = project.run("-v", "-k", "drift")
    result.assert_outcomes(passed=1)
    assert check_names(result, "PASSED") == {"alembic_drift"}


def test_drift_is_reported_readably(project: Project) -> None:
    alembic_project(project)
    project.write(
        "models.py",
        MODELS.replace(
            "    title: Mapped[str] = mapped_column(String(200))\n",
            "    title: Mapped[str] = mapped_column(String(200))\n"
            "    body: Mapped[str | None] = mapped_column(String(500))\n",
        ),
    )
    project.ini("alchemy_migration_checks = drift")
    project.tests("def test_nothing():\n    pass\n")
    result = project.run("-v")
    result.assert_outcomes(passed=1, failed=1)
    reports = failure_reports(result.stdout.str())
    assert "the models and the migrations disagree" in reports
    assert "column posts.body is in the models, but no migration adds it" in reports
    assert "Traceback" not in reports


@sqlite_only
def test_the_drift_ignore_list_and_extra_tables(project: Project) -> None:
    alembic_project(project)
    write_revision(
        project,
        "ddd444",
        "ccc333",
        "audit",
        (
            "op.create_table('audit_log', sa.Column('id', sa.Integer(), primary_key=True))",
            "op.drop_table('audit_log')",
        ),
    )
    project.write(
        "models.py",
        MODELS.replace(
            "    email: Mapped[str | None] = mapped_column(String(100))\n",
            "    email: Mapped[str | None] = mapped_column(String(100))\n"
            "    nickname: Mapped[str | None] = mapped_column(String(20))\n",
        ),
    )
    project.ini("alchemy_migration_checks = drift\nalchemy_drift_ignore = users.nickname")
    project.tests("def test_nothing():\n    pass\n")
    # A table only the migrations have is left alone by default, the ignored column too.
    project.run().assert_outcomes(passed=2)
    project.ini(
        "alchemy_migration_checks = drift\nalchemy_drift_ignore = users.nickname\n"
        "alchemy_drift_extra_tables = true"
    )
    result = project.run()
    result.assert_outcomes(passed=1, failed=1)
    reports = failure_reports(result.stdout.str())
    assert "table audit_log is in the migrated database, but not in the models" in reports
    assert "nickname" not in reports.split("disagree", 1)[1]


def test_a_broken_downgrade_fails_the_roundtrip(project: Project) -> None:
    alembic_project(project)
    write_revision(project, "ccc333", "bbb222", "email", (EMAIL[0], "pass"))
    project.ini("alchemy_migration_checks = true")
    project.tests("def test_nothing():\n    pass\n")
    result = project.run("-v")
    result.assert_outcomes(passed=4, failed=1)
    assert check_names(result, "FAILED") == {"alembic_roundtrip"}
    reports = failure_reports(result.stdout.str())
    assert "the downgrade() of revision ccc333 (migrations/versions/ccc333_email.py)" in reports
    assert "column users.email is left behind" in reports
    assert not project.exists(f"{project.test_name}_migrations")


@sqlite_only
def test_a_failing_step_fails_the_upgrade_check(project: Project) -> None:
    alembic_project(project)
    write_revision(
        project, "bbb222", "aaa111", "posts", ("op.execute('SELECT * FROM nowhere')", "pass")
    )
    project.ini("alchemy_migration_checks = single_head upgrade")
    project.tests("def test_nothing():\n    pass\n")
    result = project.run("-v")
    result.assert_outcomes(passed=2, failed=1)
    reports = failure_reports(result.stdout.str())
    assert (
        "the upgrade() of revision bbb222 (migrations/versions/bbb222_posts.py, line 13)" in reports
    )


@sqlite_only
def test_the_single_head_check_fails_on_two_heads(project: Project) -> None:
    alembic_project(project)
    write_revision(project, "ddd444", "bbb222", "tags", ("pass", "pass"))
    project.ini("alchemy_migration_checks = single_head")
    project.tests("def test_nothing():\n    pass\n")
    result = project.run()
    result.assert_outcomes(passed=1, failed=1)
    reports = failure_reports(result.stdout.str())
    assert "the migrations have 2 heads" in reports
    assert "ddd444 (migrations/versions/ddd444_tags.py)" in reports


@sqlite_only
def test_an_unknown_check_name_is_a_usage_error(project: Project) -> None:
    alembic_project(project)
    project.ini("alchemy_migration_checks = single_head, stairs")
    project.tests("def test_nothing():\n    pass\n")
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "unknown check 'stairs'" in result.stderr.str()


INSIDE_A_LOOP = """
from sqlalchemy import text


async def test_built_while_the_loop_runs(request):
    # The schema is built here, from inside the running event loop of this test.
    database = request.getfixturevalue("alchemy_database")
    assert database.created
"""


def test_the_async_template_runs_from_inside_a_running_loop(project: Project) -> None:
    alembic_project(project, template="async")
    project.ini("asyncio_mode = auto")
    project.tests(INSIDE_A_LOOP)
    result = project.run("--alchemy-keep-db")
    result.assert_outcomes(passed=1)
    assert version(project) == [HEAD]


@sqlite_only
def test_the_downgrade_check_keeps_a_reusable_database_at_the_head(project: Project) -> None:
    alembic_project(project)
    project.ini("alchemy_downgrade_check = true")
    project.tests(USES_DB)
    project.run("--alchemy-reuse-db").assert_outcomes(passed=3)
    assert version(project) == [HEAD]
    again = project.run("--alchemy-reuse-db")
    again.assert_outcomes(passed=3)
    assert ": reused (fingerprint" in again.stdout.str()


@sqlite_only
def test_an_irreversible_revision_is_only_upgraded_by_the_roundtrip(project: Project) -> None:
    alembic_project(project)
    write_revision(project, "ccc333", "bbb222", "email", (EMAIL[0], "raise NotImplementedError"))
    project.ini("alchemy_migration_checks = roundtrip\nalchemy_irreversible = ccc")
    project.tests("def test_nothing():\n    pass\n")
    project.run().assert_outcomes(passed=2)
    project.ini("alchemy_migration_checks = roundtrip\nalchemy_irreversible = zzz")
    result = project.run()
    result.assert_outcomes(passed=1, failed=1)
    assert "alchemy_irreversible names zzz, which is no revision" in failure_reports(
        result.stdout.str()
    )
    project.ini("alchemy_migration_checks = roundtrip")
    result = project.run()
    result.assert_outcomes(passed=1, failed=1)
    reports = failure_reports(result.stdout.str())
    assert "the downgrade() of revision ccc333" in reports
    assert "NotImplementedError" in reports


@sqlite_only
def test_checks_without_the_alembic_schema_are_a_warning(project: Project) -> None:
    project.write("models.py", MODELS)
    project.ini("alchemy_migration_checks = true")
    project.tests("def test_nothing():\n    pass\n")
    result = project.run()
    result.assert_outcomes(passed=1, warnings=1)
    assert "alchemy_migration_checks is set, but the schema is built with create_all" in (
        result.stdout.str()
    )


LOGGING_TESTS = """
import logging

from sqlalchemy import text

log = logging.getLogger("myapp.views")


def test_app_logs_are_captured(alchemy_session, caplog):
    caplog.set_level(logging.INFO)
    alchemy_session.execute(text("SELECT 1"))
    log.info("served")
    assert "served" in caplog.text
"""


@sqlite_only
def test_env_py_logging_setup_does_not_outlive_the_migrations(project: Project) -> None:
    """The generated env.py calls fileConfig(), which disables every existing logger."""
    alembic_project(project)
    project.tests(LOGGING_TESTS)
    project.run().assert_outcomes(passed=1)


def test_checks_under_pytest_xdist(project: Project) -> None:
    alembic_project(project)
    project.ini("alchemy_migration_checks = true\nalchemy_downgrade_check = true")
    project.tests(USES_DB)
    result = project.run("-n", "2")
    result.assert_outcomes(passed=7)
    assert not any(project.exists(f"{project.test_name}_gw{n}_migrations") for n in (0, 1))
    assert not any(project.exists(f"{project.test_name}_gw{n}") for n in (0, 1))


SETTINGS_ENV = """
import os

from alembic import context
from sqlalchemy import create_engine

import models


def run_migrations_online():
    # Reads the app's own setting, as many env.py files do.
    with create_engine(os.environ["DATABASE_URL"]).connect() as connection:
        context.configure(connection=connection, target_metadata=models.Base.metadata)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
"""


def test_an_env_py_that_reads_the_apps_settings(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With alchemy_env its DATABASE_URL leads to the test database; without, the run
    stops before the first migration, naming alchemy_env."""
    if project.backend == "postgresql":
        assert project.admin is not None
        with project.admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{project.app_db}"')
    monkeypatch.setenv("DATABASE_URL", project.url)  # the developer's own: the app database
    alembic_project(project, env=SETTINGS_ENV)
    project.tests(USES_DB)
    stopped = project.run()
    stopped.assert_outcomes(errors=2)
    reports = failure_reports(stopped.stdout.str())
    assert "No migration was run" in reports
    assert "alchemy_env" in reports
    assert "alembic_version" not in tables(project, project.app_db)
    project.ini("alchemy_env = DATABASE_URL")
    result = project.run("--alchemy-keep-db")
    result.assert_outcomes(passed=2)
    assert version(project) == [HEAD]
    assert tables(project, project.app_db) == set()


SESSION_LAYER = """
import pytest_alchemy
from sqlalchemy import text


@pytest_alchemy.layer(scope="session")
def admin(alchemy_session):
    alchemy_session.execute(text("INSERT INTO users (name) VALUES ('admin')"))


def test_admin(admin, alchemy_session):
    assert alchemy_session.execute(text("SELECT count(*) FROM users")).scalar() == 1
"""


def test_the_downgrade_check_next_to_a_session_layer(project: Project) -> None:
    """A session layer is still open when the check runs last: the check does not wait
    for it (nor undo its rows), it downgrades a database of its own."""
    alembic_project(project)
    project.ini("alchemy_downgrade_check = true")
    project.tests(SESSION_LAYER)
    result = project.run("--alchemy-lock-timeout", "3", "-v")
    result.assert_outcomes(passed=2)
    assert not project.exists(f"{project.test_name}_migrations")
    assert not project.exists()
    # It does check: a downgrade that leaves a table behind fails it there too.
    tags = "op.create_table('tags', sa.Column('id', sa.Integer(), primary_key=True))"
    write_revision(project, "ddd444", "ccc333", "tags", (tags, "pass"))
    broken = project.run("--alchemy-lock-timeout", "3")
    broken.assert_outcomes(passed=1, failed=1)
    assert "left the tables tags behind" in failure_reports(broken.stdout.str())


# -- an env.py that connects through the app's own engine ---------------------------------

APP_DB = """
import os

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

# Read once, when the app is imported, as many apps do.
engine = create_engine(os.environ["DATABASE_URL"])
SessionLocal = sessionmaker(engine)
"""

APP_ENGINE_ENV = """
from alembic import context

import app_db
import models

with app_db.engine.connect() as connection:
    context.configure(connection=connection, target_metadata=models.Base.metadata)
    with context.begin_transaction():
        context.run_migrations()
"""

CHECKS_FIRST = """
import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    # The checks first: the tests after them need the test database as it was built.
    items.sort(key=lambda item: not item.nodeid.startswith("alembic.ini::"))
"""

AFTER_THE_CHECKS = """
from sqlalchemy import text


def test_after_the_checks(alchemy_session):
    assert alchemy_session.execute(text("SELECT x FROM seeded")).scalars().all() == [1]
    assert alchemy_session.execute(text("SELECT count(*) FROM users")).scalar() == 0
    alchemy_session.execute(text("INSERT INTO users (id, name, email) VALUES (1, 'a', 'a@b')"))
    alchemy_session.execute(text("INSERT INTO posts (user_id, title) VALUES (1, 'x')"))
"""

SEED_INIT_SQL = """
alchemy_env = DATABASE_URL
alchemy_migration_checks = true
alchemy_init_sql =
    CREATE TABLE seeded (x integer)
    INSERT INTO seeded VALUES (1)
"""


def app_engine_project(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    if project.backend == "postgresql":
        assert project.admin is not None
        with project.admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{project.app_db}"')
    monkeypatch.setenv("DATABASE_URL", project.url)  # the developer's own: the app database
    alembic_project(project, env=APP_ENGINE_ENV)
    project.write("app_db.py", APP_DB)
    project.write("conftest.py", CHECKS_FIRST)


def test_the_checks_follow_an_env_py_on_the_apps_engine(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """env.py connects through the app's engine, which alchemy_env points at the test
    database: the checks run there, and the tests after them find it as it was built."""
    app_engine_project(project, monkeypatch)
    project.ini(SEED_INIT_SQL)
    project.tests(AFTER_THE_CHECKS)
    result = project.run("-v", "--alchemy-keep-db", "-p", "no:randomly")
    result.assert_outcomes(passed=5)
    assert check_names(result, "PASSED") == ALL_CHECKS
    output = result.stdout.str()
    assert (
        f"the migration checks ran on the test database {project.test_name}, not on "
        f"{project.test_name}_migrations" in output
    )
    assert version(project) == [HEAD]
    assert tables(project) == {"alembic_version", "users", "posts", "seeded"}
    assert project.sql("SELECT x FROM seeded") == [(1,)]
    assert project.sql("SELECT count(*) FROM posts") == [(0,)]
    assert not project.exists(f"{project.test_name}_migrations")
    assert tables(project, project.app_db) == set()  # the app's own database is untouched

    # They still check: a downgrade that leaves a column behind fails the roundtrip, and
    # the test after it still finds the database at the head.
    write_revision(project, "ccc333", "bbb222", "email", (EMAIL[0], "pass"))
    broken = project.run("--alchemy-keep-db", "-p", "no:randomly")
    broken.assert_outcomes(passed=4, failed=1)
    reports = failure_reports(broken.stdout.str())
    assert "column users.email is left behind" in reports
    assert version(project) == [HEAD]
    assert project.sql("SELECT x FROM seeded") == [(1,)]


def test_the_checks_on_the_test_database_next_to_a_session_layer(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session layer holds the test database: the checks say so instead of waiting."""
    app_engine_project(project, monkeypatch)
    project.write("conftest.py", "")  # the checks run last, the layer is still open
    project.ini(
        "alchemy_env = DATABASE_URL\nalchemy_migration_checks = upgrade\n"
        "alchemy_downgrade_check = true"
    )
    project.tests(SESSION_LAYER)
    result = project.run("--alchemy-lock-timeout", "3", "-v")
    result.assert_outcomes(passed=1, failed=2)
    assert check_names(result, "FAILED") == {"alembic_upgrade", "alembic_downgrade_check"}
    reports = failure_reports(result.stdout.str())
    assert reports.count("but the layer admin still holds it") == 2
    assert "Traceback" not in reports
    assert not project.exists(f"{project.test_name}_migrations")


TRIGRAM = (
    "op.create_index('ix_users_name_trgm', 'users', ['name'], postgresql_using='gin',\n"
    "    postgresql_ops={'name': 'gin_trgm_ops'})",
    "op.drop_index('ix_users_name_trgm', table_name='users')",
)


@postgresql_only
def test_the_init_sql_extensions_come_before_the_migrations(project: Project) -> None:
    """A migration needs pg_trgm (gin_trgm_ops): the init SQL creates it before the
    migrations run, on the test database and on the checks' own database alike."""
    assert project.admin is not None
    with project.admin.connect() as connection:
        available = connection.exec_driver_sql(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_trgm'"
        ).scalar()
    if not available:
        pytest.fail("the PostgreSQL server of the suite has no pg_trgm (postgresql-contrib)")
    alembic_project(project)
    write_revision(project, "ddd444", HEAD, "trigram", TRIGRAM)
    seed = project.seed("INSERT INTO users (name) VALUES ('seed')")
    project.ini(
        "alchemy_migration_checks = upgrade roundtrip\n"
        "alchemy_drift_ignore = ix_users_name_trgm\n"
        "alchemy_init_sql = CREATE EXTENSION IF NOT EXISTS pg_trgm\n" + seed
    )
    project.tests(
        """
        from sqlalchemy import text

        def test_seeded(alchemy_session):
            assert alchemy_session.execute(text("SELECT name FROM users")).scalar() == "seed"
        """
    )
    result = project.run("-v", "--alchemy-keep-db")
    result.assert_outcomes(passed=3)
    assert check_names(result, "PASSED") == {"alembic_upgrade", "alembic_roundtrip"}
    assert version(project) == ["ddd444"]
    assert project.sql("SELECT extname FROM pg_extension WHERE extname = 'pg_trgm'") == [
        ("pg_trgm",)
    ]
    assert project.sql(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'users' AND "
        "indexname = 'ix_users_name_trgm'"
    ) == [("ix_users_name_trgm",)]
    assert not project.exists(f"{project.test_name}_migrations")


def test_a_refusal_inside_a_check_is_reported_once(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without alchemy_env the app's engine (alchemy_app_sessions) leads to the app's own
    database: the blocker refuses it inside the check, which fails once, not again at
    its teardown."""
    app_engine_project(project, monkeypatch)
    project.ini("alchemy_app_sessions = app_db:SessionLocal\nalchemy_migration_checks = upgrade")
    project.tests("def test_nothing():\n    pass\n")
    result = project.run("-v")
    result.assert_outcomes(passed=1, failed=1)
    output = result.stdout.str()
    reports = failure_reports(output)
    assert reports.count("opened a connection of the engine behind app_db:SessionLocal") == 1
    assert "ERROR at teardown" not in output
    assert tables(project, project.app_db) == set()


def test_an_alchemy_env_name_the_app_never_reads_is_named(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """alchemy_env sets DB_URL, the app reads DATABASE_URL: the build stops before any
    migration, and says which variables it set and what to add."""
    app_engine_project(project, monkeypatch)
    project.ini("alchemy_env = DB_URL")
    project.tests(USES_DB)
    result = project.run()
    result.assert_outcomes(errors=2)
    reports = failure_reports(result.stdout.str())
    assert "instead of the test database" in reports
    assert "alchemy_env (from ini alchemy_env in pytest.ini) set DB_URL to the test database" in (
        " ".join(reports.split())
    )
    assert "add that variable to alchemy_env" in reports
    assert tables(project, project.app_db) == set()  # nothing reached the app's database


ASYNC_APP_DB = """
import os

from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

url = make_url(os.environ["DATABASE_URL"])
if url.get_backend_name() == "postgresql":
    url = url.set(drivername="postgresql+asyncpg")  # binds its futures to one loop
engine = create_async_engine(url, pool_pre_ping=True)
SessionLocal = async_sessionmaker(engine)
"""

ASYNC_APP_ENGINE_ENV = """
import asyncio

from alembic import context

import app_db
import models


def run(connection):
    context.configure(connection=connection, target_metadata=models.Base.metadata)
    with context.begin_transaction():
        context.run_migrations()


async def main():
    async with app_db.engine.connect() as connection:
        await connection.run_sync(run)


asyncio.run(main())
"""


def test_the_checks_follow_an_env_py_on_the_apps_async_engine(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An async app engine, each env.py run in its own asyncio.run(): the attempt on the
    checks' own database leaves no pooled connection of a closed loop to the next run."""
    app_engine_project(project, monkeypatch)
    project.write("app_db.py", ASYNC_APP_DB)
    project.write("migrations/env.py", ASYNC_APP_ENGINE_ENV)
    project.ini(
        "alchemy_env = DATABASE_URL={async_url}\n"
        "alchemy_migration_checks = true\nalchemy_downgrade_check = true"
    )
    project.tests(USES_DB)
    result = project.run("-v", "-p", "no:randomly")
    assert check_names(result, "PASSED") == ALL_CHECKS | {"alembic_downgrade_check"}
    assert "different loop" not in result.stdout.str()
    result.assert_outcomes(passed=len(ALL_CHECKS) + 1 + USES_DB.count("def test_"))
    assert not project.exists(f"{project.test_name}_migrations")
    assert tables(project, project.app_db) == set()


@sqlite_only
def test_the_checks_on_the_test_database_under_pytest_xdist(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each worker's checks run on that worker's test database; the controller's
    summary says where."""
    app_engine_project(project, monkeypatch)
    project.write("conftest.py", "")
    project.ini(SEED_INIT_SQL)
    project.tests(USES_DB)
    result = project.run("-n", "2", "--alchemy-keep-db")
    result.assert_outcomes(passed=6)
    line = next(
        line for line in result.stdout.lines if "the migration checks ran on the test" in line
    )
    assert re.search(rf"database {project.test_name}_gw[01]\b", line), line
    for n in (0, 1):
        assert not project.exists(f"{project.test_name}_gw{n}_migrations")
        if project.exists(f"{project.test_name}_gw{n}"):
            assert version(project, f"{project.test_name}_gw{n}") == [HEAD]
            assert project.sql("SELECT x FROM seeded", f"{project.test_name}_gw{n}") == [(1,)]


# -- more ways the configuration, the history and the models go wrong ---------------------

DRIFTED_MODELS = """
from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))


class Post(Base):
    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int]
    title: Mapped[str | None] = mapped_column(String(200), index=True)


class Tag(Base):
    __tablename__ = "tags"
    id: Mapped[int] = mapped_column(primary_key=True)
"""


def test_every_kind_of_drift_gets_its_own_sentence(project: Project) -> None:
    alembic_project(project)
    project.write("models.py", DRIFTED_MODELS)
    project.ini("alchemy_migration_checks = drift")
    project.tests("def test_nothing():\n    pass\n")
    result = project.run("-v")
    result.assert_outcomes(passed=1, failed=1)
    reports = failure_reports(result.stdout.str())
    assert "table tags is in the models, but no migration creates it" in reports
    assert "column users.email is in the migrated database, not in the models" in reports
    assert re.search(
        r"column users\.name: type is VARCHAR\(50\) in the migrated database, "
        r"VARCHAR\(80\) in the models",
        reports,
    )
    assert (
        "column posts.title: nullable is False in the migrated database, True in the models"
        in reports
    )
    assert "index ix_posts_title on posts is only in the models" in reports
    assert "foreign key on posts (user_id) is only in the migrated database" in reports
    assert "finds 6 differences" in reports
    assert "Traceback" not in reports


@sqlite_only
def test_a_revision_with_a_syntax_error_is_named(project: Project) -> None:
    alembic_project(project)
    path = project.path / "migrations" / "versions" / "ccc333_email.py"
    path.write_text(path.read_text().replace("def upgrade():", "def upgrade(:"))
    project.tests(USES_DB)
    result = project.run()
    result.assert_outcomes(errors=2)
    reports = failure_reports(result.stdout.str())
    assert "loading the migrations of alembic.ini failed" in reports
    assert "ccc333_email.py, line" in reports
    assert "SyntaxError" in reports
    assert "alembic heads" in reports
    assert not project.exists()


@sqlite_only
def test_a_revision_that_raises_on_import_is_named_with_its_line(project: Project) -> None:
    alembic_project(project)
    path = project.path / "migrations" / "versions" / "ccc333_email.py"
    path.write_text(path.read_text() + "\nraise RuntimeError('settings missing')\n")
    project.tests(USES_DB)
    result = project.run()
    result.assert_outcomes(errors=2)
    reports = failure_reports(result.stdout.str())
    assert "loading the migrations of alembic.ini failed" in reports
    assert re.search(r"ccc333_email\.py, line \d+: RuntimeError: settings missing", reports)
    assert "Traceback" not in reports
    assert not project.exists()


@sqlite_only
def test_a_configuration_without_script_location(project: Project) -> None:
    alembic_project(project)
    config = project.path / "alembic.ini"
    config.write_text(re.sub(r"(?m)^script_location = .*$\n", "", config.read_text()))
    project.tests(USES_DB)
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stderr.str()
    assert "sets no script_location" in output
    assert "to its [alembic] section" in output
    assert not project.exists()


@sqlite_only
def test_an_empty_versions_folder_is_named(project: Project) -> None:
    alembic_project(project)
    for path in (project.path / "migrations" / "versions").glob("*.py"):
        path.unlink()
    project.ini("alchemy_migration_checks = single_head")
    project.tests("def test_nothing():\n    pass\n")
    result = project.run()
    result.assert_outcomes(passed=1, failed=1)
    assert "has no revisions" in failure_reports(result.stdout.str())


@sqlite_only
def test_alembic_config_may_name_a_pyproject_by_absolute_path(project: Project) -> None:
    alembic_project(project)
    ini = project.path / "alembic.ini"
    location = re.search(r"(?m)^script_location = (.*)$", ini.read_text())
    assert location is not None
    ini.unlink()
    settings = project.path / "settings"
    settings.mkdir()
    toml = settings / "pyproject.toml"
    toml.write_text(f'[tool.alembic]\nscript_location = "{project.path / "migrations"}"\n')
    project.ini(f"alchemy_alembic_config = {toml}")
    project.tests(USES_DB)
    project.run().assert_outcomes(passed=2)
    assert not project.exists()


def without_alchemy_metadata(project: Project) -> None:
    ini = project.path / "pytest.ini"
    ini.write_text(re.sub(r"(?m)^alchemy_metadata = .*$\n", "", ini.read_text()))


FILTERED_ENV = SHARED_ENV.replace(
    "target_metadata = models.Base.metadata",
    "target_metadata = [models.Base.metadata]\n\n\n"
    "def include_object(obj, name, type_, reflected, other):\n"
    "    return not (type_ == 'table' and name == 'posts')",
).replace(
    "target_metadata=target_metadata)",
    "target_metadata=target_metadata, include_object=include_object)",
)


@sqlite_only
def test_the_drift_check_follows_env_py_include_object(project: Project) -> None:
    alembic_project(project, env=FILTERED_ENV)
    project.ini("alchemy_migration_checks = drift")
    project.tests("def test_nothing():\n    pass\n")
    # posts.body and tags drift, but env.py's include_object leaves posts alone.
    project.write(
        "models.py",
        MODELS.replace(
            "    title: Mapped[str] = mapped_column(String(200))\n",
            "    title: Mapped[str] = mapped_column(String(200))\n"
            "    body: Mapped[str | None] = mapped_column(String(500))\n",
        )
        + "\n\nclass Tag(Base):\n    __tablename__ = 'tags'\n"
        "    id: Mapped[int] = mapped_column(primary_key=True)\n",
    )
    without_alchemy_metadata(project)  # the models come from env.py's target_metadata list
    result = project.run()
    result.assert_outcomes(passed=1, failed=1)
    reports = failure_reports(result.stdout.str())
    assert "finds 1 difference:" in reports
    assert "table tags is in the models" in reports
    assert "posts.body" not in reports


@sqlite_only
def test_the_drift_check_without_models_says_where_to_name_them(project: Project) -> None:
    alembic_project(project, env=SHARED_ENV.replace("models.Base.metadata", "None"))
    project.ini("alchemy_migration_checks = drift")
    without_alchemy_metadata(project)
    project.tests("def test_nothing():\n    pass\n")
    result = project.run()
    result.assert_outcomes(passed=1, failed=1)
    reports = failure_reports(result.stdout.str())
    assert "the drift check has no models to compare with" in reports
    assert "alchemy_metadata" in reports


URL_ONLY_ENV = """
from alembic import context

import models

config = context.config
context.configure(url=config.get_main_option("sqlalchemy.url"),
                  target_metadata=models.Base.metadata)
with context.begin_transaction():
    context.run_migrations()
"""


@sqlite_only
def test_an_env_py_that_configures_a_url_instead_of_a_connection(project: Project) -> None:
    alembic_project(project, env=URL_ONLY_ENV)
    project.tests(USES_DB)
    result = project.run()
    result.assert_outcomes(errors=2)
    reports = failure_reports(result.stdout.str())
    assert "migrations/env.py configured Alembic without a connection" in reports
    assert "no migration would run on the test database" in reports
    assert "Traceback" not in reports
    assert not project.exists()


@sqlite_only
def test_an_env_py_that_never_configures_alembic(project: Project) -> None:
    alembic_project(project, env="import models\n")
    project.tests(USES_DB)
    result = project.run()
    result.assert_outcomes(errors=2)
    reports = failure_reports(result.stdout.str())
    assert "migrations/env.py ran but never called context.run_migrations()" in reports
    assert "Traceback" not in reports
    assert not project.exists()


def set_script_location(project: Project, value: str) -> None:
    config = project.path / "alembic.ini"
    config.write_text(
        re.sub(r"(?m)^script_location = .*$", f"script_location = {value}", config.read_text())
    )


@sqlite_only
def test_a_configuration_that_cannot_be_read_is_named(project: Project) -> None:
    alembic_project(project)
    set_script_location(project, "%(nowhere)s/migrations")
    project.tests(USES_DB)
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stderr.str()
    assert output.count("reading the Alembic configuration") == 1
    assert "alembic.ini failed" in output
    assert "nowhere" in output
    assert "INTERNALERROR" not in output + result.stdout.str()
    assert not project.exists()


@sqlite_only
def test_a_relative_script_location_is_relative_to_alembic_ini(project: Project) -> None:
    alembic_project(project)
    (project.path / "db").mkdir()
    (project.path / "migrations").rename(project.path / "db" / "migrations")
    (project.path / "alembic.ini").rename(project.path / "db" / "alembic.ini")
    project.path.joinpath("db", "alembic.ini").write_text(
        re.sub(
            r"(?m)^script_location = .*$",
            "script_location = migrations",
            (project.path / "db" / "alembic.ini").read_text(),
        )
    )
    project.ini("alchemy_alembic_config = db/alembic.ini")
    project.tests(USES_DB)
    result = project.run()
    result.assert_outcomes(passed=2)
    assert "alembic (head ccc333, 3 revisions)" in result.stdout.str()


@sqlite_only
def test_a_package_script_location(project: Project) -> None:
    alembic_project(project)
    (project.path / "appdb").mkdir()
    (project.path / "appdb" / "__init__.py").write_text("")
    (project.path / "migrations").rename(project.path / "appdb" / "migrations")
    set_script_location(project, "appdb:migrations")
    project.tests(USES_DB)
    result = project.run()
    result.assert_outcomes(passed=2)
    assert "alembic (head ccc333, 3 revisions)" in result.stdout.str()


@sqlite_only
def test_on_two_heads_every_check_says_why_it_cannot_run(project: Project) -> None:
    alembic_project(project)
    write_revision(project, "ddd444", "bbb222", "tags", ("pass", "pass"))
    project.ini("alchemy_migration_checks = upgrade, roundtrip")
    project.tests("def test_nothing():\n    pass\n")
    result = project.run("-v")
    result.assert_outcomes(passed=1, failed=2)
    assert check_names(result, "FAILED") == {"alembic_upgrade", "alembic_roundtrip"}
    reports = failure_reports(result.stdout.str())
    assert "the upgrade check cannot run: the migrations have 2 heads" in reports
    assert "the roundtrip check cannot run: the migrations have 2 heads" in reports


@sqlite_only
def test_a_failed_downgrade_check_is_not_reused(project: Project) -> None:
    alembic_project(project)
    write_revision(project, "ccc333", "bbb222", "email", (EMAIL[0], "op.drop_table('nothing')"))
    project.ini("alchemy_downgrade_check = true")
    project.tests(USES_DB)
    first = project.run("--alchemy-reuse-db")
    first.assert_outcomes(passed=2, failed=1)
    assert "the downgrade() of revision ccc333" in failure_reports(first.stdout.str())
    # The database the failed check left behind is built again, not reused.
    project.ini("")
    second = project.run("--alchemy-reuse-db")
    second.assert_outcomes(passed=2)
    assert ": built (" in second.stdout.str()
    assert ": reused (" not in second.stdout.str()
    assert version(project) == [HEAD]
