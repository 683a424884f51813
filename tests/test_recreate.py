"""The ``recreate`` strategy: tests commit for real, change the schema if they like, and
afterwards every table is dropped and made again from the schema read at the start,
with the seed rows, sequence positions, triggers and views of the baseline.

Each generated project seeds rows into several tables (a user, a vendor and an
application that reference each other, two tickets of which one is deleted) and an
audit trigger on ``users``: the rebuild must not fire it, and it must fire again in
the next test. Tests commit through the test's session, an engine of their own and a
thread, and drop, alter and create tables; later tests (in several orders) check they
find the schema and rows of the baseline, and the database is checked out of band
after the run (kept with ``--alchemy-keep-db``), against a fingerprint of its schema
taken before any test changed it.
"""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from .helpers import Project, failure_reports, postgresql_only
from .test_truncate import POSTGRESQL_TRIGGER, SHUFFLED, SQLITE_TRIGGER

EXTRA_MODELS = """

class Audit(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    what: Mapped[str] = mapped_column(String(50))


class Ticket(Base):
    '''Ids from a counter that never goes back (SQLite: AUTOINCREMENT).'''

    __tablename__ = "tickets"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(50), unique=True)
"""

SEED = (
    "INSERT INTO users (name) VALUES ('seed')",
    # A foreign-key cycle in the seed rows themselves.
    "INSERT INTO vendors (name) VALUES ('acme')",
    "INSERT INTO applications (vendor_id) SELECT id FROM vendors",
    "UPDATE vendors SET featured_id = (SELECT id FROM applications)",
    "INSERT INTO tickets (title) VALUES ('first')",
    "INSERT INTO tickets (title) VALUES ('second')",
    "DELETE FROM tickets WHERE title = 'second'",
    "CREATE INDEX ix_users_name ON users (name)",
    "CREATE VIEW user_names AS SELECT name FROM users",
)

FINGERPRINT_SQLITE = (
    "SELECT type, name, tbl_name, sql FROM sqlite_master "
    "WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
)
FINGERPRINT_POSTGRESQL = """
SELECT 'column', c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
    || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
    || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END || ' ' || a.attidentity::text
    || ' ' || a.attgenerated::text || ' #' || a.attnum
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
    AND c.relkind IN ('r', 'p', 'v', 'm')
UNION ALL SELECT 'constraint', conrelid::regclass || ' ' || conname || ' '
    || pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL SELECT 'index', pg_get_indexdef(indexrelid) FROM pg_index
    WHERE indrelid::regclass::text NOT LIKE 'pg_%' AND indrelid IN
    (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace)
UNION ALL SELECT 'trigger', pg_get_triggerdef(oid) || ' ' || tgenabled::text FROM pg_trigger
    WHERE NOT tgisinternal
UNION ALL SELECT 'view', relname || ' ' || pg_get_viewdef(oid) FROM pg_class
    WHERE relnamespace = 'public'::regnamespace AND relkind IN ('v', 'm')
UNION ALL SELECT 'sequence', schemaname || '.' || sequencename || ' ' || data_type || ' '
    || start_value || ' ' || increment_by || ' ' || coalesce(last_value, 0)
    FROM pg_sequences WHERE schemaname = 'public'
UNION ALL SELECT 'relation', relname || ' ' || relkind::text || ' ' || relpersistence::text
    || ' ' || relrowsecurity || coalesce(' ' || relacl::text, '')
    || coalesce(' ' || array_to_string(reloptions, ','), '')
    FROM pg_class WHERE relnamespace = 'public'::regnamespace
UNION ALL SELECT 'comment', classoid::regclass || ' ' || objsubid || ' ' || description
    FROM pg_description WHERE objoid >= 16384
UNION ALL SELECT 'rule', pg_get_ruledef(oid) FROM pg_rewrite
    WHERE rulename <> '_RETURN' AND ev_class >= 16384
UNION ALL SELECT 'policy', polname || ' ' || polcmd::text || ' '
    || coalesce(pg_get_expr(polqual, polrelid), '') FROM pg_policy
UNION ALL SELECT 'statistics', pg_get_statisticsobjdef(oid) FROM pg_statistic_ext
UNION ALL SELECT 'function', pg_get_functiondef(oid) FROM pg_proc
    WHERE pronamespace = 'public'::regnamespace
UNION ALL SELECT 'inherits', inhrelid::regclass || ' ' || inhparent::regclass FROM pg_inherits
ORDER BY 1, 2
"""


def seeded(project: Project, extra_ini: str = "", *more_seed: str) -> None:
    """The standard models plus ``audit`` and ``tickets``; the seed rows, then the audit
    triggers; every test under ``recreate``."""
    project.write("models.py", (project.path / "models.py").read_text() + EXTRA_MODELS)
    triggers = SQLITE_TRIGGER if project.backend == "sqlite" else POSTGRESQL_TRIGGER
    seed = project.seed(*SEED, *more_seed, *triggers)
    project.ini(f"alchemy_isolation = recreate\n{seed}\n{extra_ini}")


def fingerprint(project: Project, *, positions: bool = True) -> list[list[str]]:
    """The schema of the kept test database, out of band (``positions``: with where each
    sequence stands)."""
    sql = FINGERPRINT_SQLITE if project.backend == "sqlite" else FINGERPRINT_POSTGRESQL
    if not positions:
        sql = sql.replace("coalesce(last_value, 0)", "0")
    return [[str(value) for value in row] for row in project.sql(sql)]


def baseline_fingerprint(project: Project) -> list[list[str]]:
    """The schema as the schema step leaves it: a run of no test but one that changes
    nothing, its database kept and looked at out of band."""
    result = project.run("-p", "no:randomly", "--alchemy-keep-db", "-k", "test_nothing")
    result.assert_outcomes(passed=1)
    return fingerprint(project)


SYNC_TESTS = """
import threading

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from models import Application, Audit, Ticket, User, Vendor


def own_engine(database):
    return sa.create_engine(database.url, poolclass=sa.pool.NullPool)


def names(session):
    return session.scalars(select(User.name).order_by(User.id)).all()


def count(session, model):
    return session.scalar(select(func.count()).select_from(model))


def test_nothing(alchemy_session):
    assert names(alchemy_session) == ["seed"]


def test_commits_for_real(alchemy_session, alchemy_database):
    alchemy_session.add(User(name="ada"))
    alchemy_session.commit()
    engine = own_engine(alchemy_database)
    with engine.connect() as connection:
        seen = connection.exec_driver_sql("SELECT name FROM users ORDER BY id").scalars().all()
    engine.dispose()
    assert seen == ["seed", "ada"]


def test_ids_start_where_the_baseline_had_them(alchemy_session):
    user, ticket = User(name="bob"), Ticket(title="third")
    alchemy_session.add_all([user, ticket])
    alchemy_session.commit()
    assert user.id == 2
    # The seed's second ticket was deleted: a counter that never goes back stands at 2.
    assert ticket.id == 3


def test_a_second_connection_commits(alchemy_session, alchemy_database):
    engine = own_engine(alchemy_database)
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO users (name) VALUES ('dan')")
        connection.exec_driver_sql("DELETE FROM users WHERE name = 'seed'")
    engine.dispose()
    assert names(alchemy_session) == ["dan"]


def test_a_thread_commits(alchemy_session, alchemy_database):
    def write():
        engine = own_engine(alchemy_database)
        with engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO vendors (name) VALUES ('from a thread')")
            connection.exec_driver_sql("UPDATE applications SET vendor_id = NULL")
        engine.dispose()

    thread = threading.Thread(target=write)
    thread.start()
    thread.join()
    assert count(alchemy_session, Vendor) == 2


def test_a_foreign_key_cycle(alchemy_session):
    vendor = Vendor(name="other")
    alchemy_session.add(vendor)
    alchemy_session.flush()
    application = Application(vendor_id=vendor.id)
    alchemy_session.add(application)
    alchemy_session.flush()
    vendor.featured_id = application.id
    alchemy_session.commit()


def test_the_seed_rows_changed(alchemy_session):
    alchemy_session.scalars(select(User)).one().name = "renamed"
    alchemy_session.execute(sa.delete(Ticket))
    alchemy_session.commit()


def test_starts_clean(alchemy_session):
    assert names(alchemy_session) == ["seed"]
    assert alchemy_session.execute(select(Vendor.id, Vendor.name, Vendor.featured_id)).all() == [
        (1, "acme", 1)
    ]
    assert alchemy_session.execute(select(Application.id, Application.vendor_id)).all() == [
        (1, 1)
    ]
    assert alchemy_session.scalars(select(Ticket.title)).all() == ["first"]
    # The rebuild fired no trigger; the trigger is there and fires now.
    assert count(alchemy_session, Audit) == 0
    alchemy_session.add(User(name="eve"))
    alchemy_session.commit()
    assert alchemy_session.scalars(select(Audit.what)).all() == ["insert eve"]


def test_the_foreign_keys_are_back(alchemy_connection):
    inspector = sa.inspect(alchemy_connection)
    referred = {
        table: sorted(key["referred_table"] for key in inspector.get_foreign_keys(table))
        for table in ("vendors", "applications")
    }
    assert referred == {"vendors": ["applications"], "applications": ["vendors"]}
    unique = inspector.get_unique_constraints("tickets") or inspector.get_indexes("tickets")
    assert unique, "the unique constraint on tickets.title is back"
"""


@pytest.mark.parametrize("seed", [None, 1, 2, 3])
def test_recreate_commits_and_puts_the_baseline_back(project: Project, seed: int | None) -> None:
    seeded(project)
    project.tests(SYNC_TESTS)
    before = baseline_fingerprint(project)
    if seed is not None:
        project.write("conftest.py", SHUFFLED.format(seed=seed))
    result = project.run("-p", "no:randomly", "--alchemy-keep-db")
    result.assert_outcomes(passed=9)
    assert "0 leaks" in result.stdout.str()
    # Out of band: the seed rows alone, as the seeding made them; the audit trigger never
    # fired during a rebuild; the schema, sequences included, as the schema step made it.
    assert project.sql("SELECT id, name FROM users") == [(1, "seed")]
    assert project.sql("SELECT id, name, featured_id FROM vendors") == [(1, "acme", 1)]
    assert project.sql("SELECT id, vendor_id FROM applications") == [(1, 1)]
    assert project.sql("SELECT id, title FROM tickets") == [(1, "first")]
    assert project.sql("SELECT count(*) FROM audit")[0][0] == 0
    assert fingerprint(project) == before


SCHEMA_TESTS = """
import sqlalchemy as sa
from sqlalchemy import select

from models import Audit, User

ORIGINAL = ["applications", "audit", "tickets", "users", "vendors"]


def run(connection, **statements):
    for statement in statements[connection.dialect.name]:
        connection.exec_driver_sql(statement)
    connection.commit()


def assert_original(connection):
    # What every test must find, whatever the test before it did to the schema.
    inspector = sa.inspect(connection)
    assert sorted(inspector.get_table_names()) == ORIGINAL
    assert inspector.get_view_names() == ["user_names"]
    assert [column["name"] for column in inspector.get_columns("users")] == ["id", "name"]
    assert [index["name"] for index in inspector.get_indexes("users")] == ["ix_users_name"]
    assert {key["referred_table"] for key in inspector.get_foreign_keys("vendors")} == {
        "applications"
    }
    assert connection.exec_driver_sql("SELECT name FROM user_names").scalars().all() == ["seed"]
    connection.exec_driver_sql("INSERT INTO users (name) VALUES ('probe')")
    audit = connection.exec_driver_sql("SELECT what FROM audit").scalars().all()
    connection.rollback()
    assert audit == ["insert probe"], "the audit trigger is there, and fired for this insert only"


def test_nothing(alchemy_connection):
    assert_original(alchemy_connection)


def test_drops_a_table(alchemy_connection):
    assert_original(alchemy_connection)
    run(alchemy_connection, sqlite=["DROP TABLE audit"], postgresql=["DROP TABLE audit"])


def test_drops_a_table_of_the_foreign_key_cycle(alchemy_connection):
    assert_original(alchemy_connection)
    run(
        alchemy_connection,
        sqlite=["DROP TABLE applications"],
        postgresql=["DROP TABLE applications CASCADE"],
    )


def test_alters_columns(alchemy_connection):
    assert_original(alchemy_connection)
    run(
        alchemy_connection,
        sqlite=[
            "ALTER TABLE users ADD COLUMN extra INTEGER",
            "ALTER TABLE users RENAME COLUMN name TO full_name",
        ],
        postgresql=[
            "ALTER TABLE users ADD COLUMN extra integer NOT NULL DEFAULT 1",
            "ALTER TABLE tickets ALTER COLUMN title TYPE text",
            "ALTER TABLE users RENAME COLUMN name TO full_name",
            "ALTER TABLE tickets DROP CONSTRAINT tickets_title_key",
        ],
    )


def test_creates_tables(alchemy_connection):
    assert_original(alchemy_connection)
    statements = [
        "CREATE TABLE scratch (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users (id))",
        "INSERT INTO scratch (id, user_id) VALUES (1, 1)",
        "CREATE INDEX ix_scratch_user ON scratch (user_id)",
        "CREATE VIEW scratch_view AS SELECT * FROM scratch",
    ]
    run(alchemy_connection, sqlite=statements, postgresql=[*statements, "CREATE SEQUENCE spare"])


def test_drops_a_view_an_index_and_a_trigger(alchemy_connection):
    assert_original(alchemy_connection)
    run(
        alchemy_connection,
        sqlite=[
            "DROP VIEW user_names",
            "DROP INDEX ix_users_name",
            "DROP TRIGGER users_audit_insert",
        ],
        postgresql=[
            "DROP VIEW user_names",
            "DROP INDEX ix_users_name",
            "DROP TRIGGER users_audit ON users",
        ],
    )


def test_writes_and_changes_the_schema_through_the_session(alchemy_connection, alchemy_session):
    assert_original(alchemy_connection)
    alchemy_session.add(User(name="ada"))
    alchemy_session.execute(sa.text("ALTER TABLE audit ADD COLUMN note VARCHAR(20)"))
    alchemy_session.commit()
    assert alchemy_session.scalars(select(Audit.what)).all() == ["insert ada"]
"""


@pytest.mark.parametrize("seed", [None, 1, 2, 3, 4])
def test_recreate_undoes_schema_changes(project: Project, seed: int | None) -> None:
    seeded(project)
    project.tests(SCHEMA_TESTS)
    baseline_fingerprint(project)
    before = fingerprint(project, positions=False)
    if seed is not None:
        project.write("conftest.py", SHUFFLED.format(seed=seed))
    result = project.run("-p", "no:randomly", "--alchemy-keep-db")
    result.assert_outcomes(passed=7)
    assert "0 leaks" in result.stdout.str()
    # Where sequences stand is left out: a test that rolled back an insert and committed
    # nothing moved them (nextval is not undone), and nothing is rebuilt after it.
    assert fingerprint(project, positions=False) == before
    tables = project.sql(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name"
        if project.backend == "sqlite"
        else "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
    )
    assert [name for (name,) in tables] == ["applications", "audit", "tickets", "users", "vendors"]
    assert project.sql("SELECT count(*) FROM audit")[0][0] == 0


KEPT_TESTS = """
import sqlalchemy as sa
from sqlalchemy import select

from models import User, Vendor


def versions(connection):
    return connection.exec_driver_sql("SELECT v FROM alembic_version ORDER BY v").scalars().all()


def test_writes_kept_and_recreated_tables(alchemy_session):
    connection = alchemy_session.connection()
    assert versions(connection) == ["base"]
    connection.exec_driver_sql("INSERT INTO alembic_version (v) VALUES ('head')")
    alchemy_session.get(Vendor, 1).name = "kept"
    alchemy_session.add(User(name="gone"))
    alchemy_session.commit()
    # The kept vendor now points at an application that the rebuild removes.
    connection = alchemy_session.connection()
    connection.exec_driver_sql("INSERT INTO applications (id, vendor_id) VALUES (50, 1)")
    connection.exec_driver_sql("UPDATE vendors SET featured_id = 50")
    alchemy_session.commit()


def test_the_kept_tables_kept_what_the_test_wrote(alchemy_session):
    connection = alchemy_session.connection()
    assert versions(connection) == ["base", "head"]
    assert alchemy_session.execute(select(Vendor.name, Vendor.featured_id)).all() == [
        ("kept", 50)
    ]
    assert alchemy_session.scalars(select(User.name)).all() == ["seed"]
    # The kept table's foreign key to the rebuilt table is there again.
    keys = sa.inspect(connection).get_foreign_keys("vendors")
    assert [key["referred_table"] for key in keys] == ["applications"]


def test_another_connection_leaks(alchemy_session, alchemy_database):
    engine = sa.create_engine(alchemy_database.url, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO users (name) VALUES ('leaked')")
    engine.dispose()
"""


def test_kept_tables_are_left_alone(project: Project) -> None:
    seeded(
        project,
        "alchemy_keep_tables = alembic_version vendors",
        "CREATE TABLE alembic_version (v VARCHAR(32) PRIMARY KEY)",
        "INSERT INTO alembic_version (v) VALUES ('base')",
    )
    project.tests(KEPT_TESTS)
    project.write(
        "conftest.py",
        """
        import pytest


        def pytest_collection_modifyitems(items):
            for item in items:
                if item.name == "test_another_connection_leaks":
                    item.add_marker(pytest.mark.alchemy_db(isolation="savepoint"))
        """,
    )
    result = project.run("-p", "no:randomly", "--alchemy-keep-db")
    result.assert_outcomes(passed=3, errors=1)
    # The leak check after the last test compares with the baseline: what the kept tables
    # hold became theirs, so only the leaked row is named.
    reports = " ".join(failure_reports(result.stdout.str()).split())
    start = reports.index("test_another_connection_leaks left changes in the database")
    leaked = reports[start : reports.index("Something wrote", start)]
    assert "users (1 -> 2 rows, 1 added)" in leaked
    assert "alembic_version" not in leaked
    assert "vendors" not in leaked
    assert project.sql("SELECT v FROM alembic_version ORDER BY v") == [("base",), ("head",)]
    assert project.sql("SELECT name, featured_id FROM vendors") == [("kept", 50)]
    assert project.sql("SELECT id, vendor_id FROM applications") == [(1, 1)]


ASYNC_TESTS = """
import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from models import Audit, User, Vendor

pytestmark = pytest.mark.asyncio


def shape(connection):
    inspector = sa.inspect(connection)
    return sorted(inspector.get_table_names()), [
        column["name"] for column in inspector.get_columns("users")
    ]


async def test_nothing(alchemy_async_session):
    assert (await alchemy_async_session.scalars(select(User.name))).all() == ["seed"]


async def test_commits_and_changes_the_schema_async(alchemy_async_connection):
    assert alchemy_async_connection.dialect.driver == "{driver}"
    user = await alchemy_async_connection.execute(
        sa.text("INSERT INTO users (name) VALUES ('ada') RETURNING id")
    )
    assert user.scalar() == 2
    await alchemy_async_connection.exec_driver_sql("ALTER TABLE users ADD COLUMN extra INTEGER")
    await alchemy_async_connection.exec_driver_sql("DROP TABLE audit")
    await alchemy_async_connection.commit()


async def test_starts_clean_async(alchemy_async_session):
    tables, columns = await (await alchemy_async_session.connection()).run_sync(shape)
    assert tables == ["applications", "audit", "tickets", "users", "vendors"]
    assert columns == ["id", "name"]
    assert (await alchemy_async_session.scalars(select(User.name))).all() == ["seed"]
    assert await alchemy_async_session.scalar(select(func.count()).select_from(Audit)) == 0
    user = User(name="bob")
    alchemy_async_session.add_all([user, Vendor(name="acme 2")])
    await alchemy_async_session.commit()
    assert user.id == 2
    assert (await alchemy_async_session.scalars(select(Audit.what))).all() == ["insert bob"]


async def test_starts_clean_again_async(alchemy_async_session):
    assert (await alchemy_async_session.scalars(select(User.name))).all() == ["seed"]
    assert await alchemy_async_session.scalar(select(func.count()).select_from(Vendor)) == 1
"""


@pytest.mark.parametrize(
    ("backend", "driver"),
    [
        pytest.param("sqlite", "aiosqlite", id="aiosqlite"),
        pytest.param("postgresql", "psycopg", id="psycopg", marks=pytest.mark.postgresql),
        pytest.param("postgresql", "asyncpg", id="asyncpg", marks=pytest.mark.postgresql),
    ],
)
def test_recreate_async(project: Project, driver: str) -> None:
    seeded(project)
    project.tests(ASYNC_TESTS.replace("{driver}", driver))
    url = make_url(project.url)
    if driver == "asyncpg":
        url = url.set(drivername="postgresql+asyncpg")
    options = (
        "--alchemy-url",
        url.render_as_string(hide_password=False),
        "-p",
        "no:randomly",
        "--alchemy-keep-db",
        "-o",
        "asyncio_mode=strict",
    )
    result = project.run(*options, "-k", "test_nothing", url=False)
    result.assert_outcomes(passed=1)
    before = fingerprint(project)
    result = project.run(*options, url=False)
    result.assert_outcomes(passed=4)
    assert "0 leaks" in result.stdout.str()
    assert fingerprint(project) == before
    assert project.sql("SELECT id, name FROM users") == [(1, "seed")]


MIXED_TESTS = """
import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from models import User


def count(session):
    return session.scalar(select(func.count()).select_from(User))


def columns(session):
    return [column["name"] for column in sa.inspect(session.connection()).get_columns("users")]


@pytest.mark.alchemy_db(isolation="savepoint")
def test_rolled_back(alchemy_session):
    assert count(alchemy_session) == 1
    assert columns(alchemy_session) == ["id", "name"]
    alchemy_session.add(User(name="in a savepoint"))
    alchemy_session.commit()


@pytest.mark.alchemy_db(isolation="truncate")
def test_truncated(alchemy_session):
    assert count(alchemy_session) == 1
    assert columns(alchemy_session) == ["id", "name"]
    alchemy_session.add(User(name="committed"))
    alchemy_session.commit()


def test_recreated(alchemy_session):
    assert count(alchemy_session) == 1
    assert columns(alchemy_session) == ["id", "name"]
    alchemy_session.execute(sa.text("ALTER TABLE users ADD COLUMN extra INTEGER"))
    alchemy_session.add(User(name="committed"))
    alchemy_session.commit()


def test_recreated_again(alchemy_session):
    assert count(alchemy_session) == 1
    assert columns(alchemy_session) == ["id", "name"]
    alchemy_session.execute(sa.text("DROP TABLE audit"))
    alchemy_session.commit()
"""


@pytest.mark.parametrize("seed", [None, 5, 6])
def test_recreate_truncate_and_savepoint_tests_in_one_run(
    project: Project, seed: int | None
) -> None:
    seeded(project)
    project.tests(MIXED_TESTS)
    if seed is not None:
        project.write("conftest.py", SHUFFLED.format(seed=seed))
    result = project.run("-p", "no:randomly", "--alchemy-keep-db")
    result.assert_outcomes(passed=4)
    assert "0 leaks" in result.stdout.str()
    assert project.sql("SELECT name FROM users") == [("seed",)]


POSTGRESQL_OBJECTS = (
    "CREATE TYPE mood AS ENUM ('happy', 'sad')",
    "CREATE FUNCTION never() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'disabled trigger fired'; END $$",
    """CREATE TABLE profiles (
        id integer GENERATED ALWAYS AS IDENTITY (START WITH 100) PRIMARY KEY,
        user_id integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        mood mood NOT NULL DEFAULT 'happy',
        score numeric(5, 2) CHECK (score >= 0),
        doubled numeric GENERATED ALWAYS AS (score * 2) STORED,
        email text COLLATE "C" UNIQUE,
        CONSTRAINT profiles_score_limit CHECK (score < 500),
        EXCLUDE USING btree (user_id WITH =)
    )""",
    "CREATE INDEX profiles_lower_email ON profiles (lower(email)) WHERE email IS NOT NULL",
    "COMMENT ON TABLE profiles IS 'one per user'",
    "COMMENT ON COLUMN profiles.mood IS 'how they feel'",
    "ALTER TABLE profiles ENABLE ROW LEVEL SECURITY",
    "CREATE POLICY everyone ON profiles USING (true)",
    "CREATE TRIGGER profiles_never BEFORE INSERT ON profiles FOR EACH ROW EXECUTE FUNCTION never()",
    "ALTER TABLE profiles DISABLE TRIGGER profiles_never",
    "CREATE SEQUENCE invoice_numbers START 1000",
    "CREATE TABLE invoices (number bigint PRIMARY KEY DEFAULT nextval('invoice_numbers'))",
    "INSERT INTO invoices DEFAULT VALUES",
    "CREATE TABLE events (id bigserial, day date NOT NULL, PRIMARY KEY (id, day)) "
    "PARTITION BY RANGE (day)",
    "CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
    "CREATE TABLE events_rest PARTITION OF events DEFAULT",
    "CREATE INDEX events_day ON events (day)",
    "INSERT INTO events (day) VALUES ('2024-05-01'), ('2030-01-01')",
    "CREATE UNLOGGED TABLE scratchpad (note text) WITH (fillfactor = 70)",
    "CREATE VIEW user_profiles AS SELECT u.name, p.mood FROM users u "
    "JOIN profiles p ON p.user_id = u.id",
    "CREATE VIEW happy_users AS SELECT name FROM user_profiles WHERE mood = 'happy'",
    "CREATE MATERIALIZED VIEW user_counts AS SELECT count(*) AS n FROM users",
    "CREATE UNIQUE INDEX user_counts_n ON user_counts (n)",
    "CREATE FUNCTION profile_of(integer) RETURNS SETOF profiles LANGUAGE sql "
    "AS 'SELECT * FROM profiles WHERE user_id = $1'",
    "INSERT INTO profiles (user_id, score, email) SELECT id, 1.5, 'seed@example.com' FROM users",
    "COMMENT ON CONSTRAINT profiles_score_limit ON profiles IS 'a limit'",
    "COMMENT ON INDEX profiles_lower_email IS 'case-insensitive'",
    "COMMENT ON TRIGGER profiles_never ON profiles IS 'never fires'",
    "CREATE STATISTICS profiles_stats (dependencies) ON user_id, score FROM profiles",
    "DO $$ BEGIN CREATE ROLE recreate_reader; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    "GRANT SELECT ON profiles TO recreate_reader",
    "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)",
    "CREATE TABLE pinned_notes (rank integer NOT NULL DEFAULT 1) INHERITS (notes)",
    "CREATE RULE notes_kept AS ON DELETE TO pinned_notes DO INSTEAD NOTHING",
    "INSERT INTO notes (body) VALUES ('plain')",
    "INSERT INTO pinned_notes (body, rank) VALUES ('pinned', 2)",
)

POSTGRESQL_OBJECT_TESTS = """
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

SEEN = {}


def oid(connection, table):
    return connection.exec_driver_sql(f"SELECT '{table}'::regclass::oid").scalar()


def test_nothing(alchemy_connection):
    SEEN["users"] = oid(alchemy_connection, "users")


def test_no_commit_so_no_rebuild(alchemy_connection):
    assert oid(alchemy_connection, "users") == SEEN["users"]
    alchemy_connection.exec_driver_sql("INSERT INTO users (name) VALUES ('committed')")
    alchemy_connection.commit()


def test_rebuilt_after_a_commit(alchemy_connection):
    assert oid(alchemy_connection, "users") != SEEN["users"]


def test_breaks_everything(alchemy_connection):
    for statement in [
        "DROP TABLE users CASCADE",
        "DROP TABLE profiles CASCADE",
        "DROP SEQUENCE invoice_numbers CASCADE",
        "ALTER TABLE events DETACH PARTITION events_2024",
        "DROP INDEX events_day",
        "DROP VIEW IF EXISTS happy_users",
        "INSERT INTO events (day) VALUES ('2024-07-01')",
        "ALTER TABLE scratchpad SET LOGGED",
        "DROP TABLE notes CASCADE",
        "CREATE TABLE profiles (id integer)",
    ]:
        alchemy_connection.exec_driver_sql(statement)
    alchemy_connection.commit()


def test_constraints_are_back(alchemy_connection):
    run = alchemy_connection.exec_driver_sql
    with pytest.raises(IntegrityError, match="profiles_email_key"):
        run("INSERT INTO profiles (user_id, email) VALUES (1, 'seed@example.com')")
    alchemy_connection.rollback()
    with pytest.raises(IntegrityError, match="profiles_score_limit"):
        run("INSERT INTO profiles (user_id, score) VALUES (1, 600)")
    alchemy_connection.rollback()
    with pytest.raises(IntegrityError, match="profiles_user_id_excl"):
        run("INSERT INTO profiles (user_id) VALUES (1)")
    alchemy_connection.rollback()
    with pytest.raises(IntegrityError, match="profiles_user_id_fkey"):
        run("INSERT INTO profiles (user_id) VALUES (99)")
    alchemy_connection.rollback()
    # The failed inserts took identity values, which no rollback gives back: a commit,
    # so that the rebuild puts the sequence back.
    run("INSERT INTO users (name) VALUES ('committed')")
    alchemy_connection.commit()


def test_rows_sequences_views_and_functions_are_back(alchemy_connection):
    run = alchemy_connection.exec_driver_sql
    profile = run("SELECT id, user_id, mood::text, score, doubled, email FROM profile_of(1)")
    assert profile.all() == [(100, 1, "happy", 1.5, 3.0, "seed@example.com")]
    assert run("SELECT name FROM happy_users").scalars().all() == ["seed"]
    assert run("SELECT n FROM user_counts").scalars().all() == [1]
    # The identity column and the standalone sequence go on where the baseline had them.
    run("DELETE FROM profiles")
    assert run("INSERT INTO profiles (user_id) VALUES (1) RETURNING id").scalar() == 101
    assert run("INSERT INTO invoices DEFAULT VALUES RETURNING number").scalar() == 1001
    run("INSERT INTO events (day) VALUES ('2024-06-01'), ('2031-01-01')")
    assert run("SELECT count(*) FROM events_2024").scalar() == 2
    assert run("SELECT count(*) FROM events_rest").scalar() == 2
    assert run("SELECT count(*) FROM ONLY events_rest").scalar() == 2
    alchemy_connection.commit()


def test_table_settings_are_back(alchemy_connection):
    run = alchemy_connection.exec_driver_sql
    assert run(
        "SELECT relrowsecurity, obj_description(oid, 'pg_class') FROM pg_class "
        "WHERE oid = 'profiles'::regclass"
    ).one() == (True, "one per user")
    scratchpad = run(
        "SELECT relpersistence::text, reloptions FROM pg_class WHERE relname = 'scratchpad'"
    )
    assert scratchpad.one() == ("u", ["fillfactor=70"])
    assert run("SELECT count(*) FROM pg_policy WHERE polname = 'everyone'").scalar() == 1
    assert run(
        "SELECT tgenabled::text FROM pg_trigger WHERE tgname = 'profiles_never'"
    ).scalar() == "D"
    assert sorted(run("SELECT relname FROM pg_class WHERE relispartition").scalars()) == [
        "events_2024",
        "events_2024_day_idx",
        "events_2024_pkey",
        "events_rest",
        "events_rest_day_idx",
        "events_rest_pkey",
    ]
"""


@postgresql_only
def test_recreate_rebuilds_what_postgresql_has(project: Project) -> None:
    seeded(project, "", *POSTGRESQL_OBJECTS)
    project.tests(POSTGRESQL_OBJECT_TESTS)
    before = baseline_fingerprint(project)
    result = project.run("-p", "no:randomly", "--alchemy-keep-db")
    result.assert_outcomes(passed=7)
    assert "0 leaks" in result.stdout.str()
    after = fingerprint(project)
    assert after == before
    kinds = {kind for kind, _ in before}
    assert kinds == {
        "column",
        "comment",
        "constraint",
        "function",
        "index",
        "inherits",
        "policy",
        "relation",
        "rule",
        "sequence",
        "statistics",
        "trigger",
        "view",
    }
    assert project.sql("SELECT count(*) FROM events")[0][0] == 2
    # A parent table's own rows and its child's, each once.
    assert project.sql("SELECT body FROM ONLY notes") == [("plain",)]
    assert project.sql("SELECT body, rank FROM pinned_notes") == [("pinned", 2)]


@postgresql_only
def test_what_recreate_cannot_rebuild_is_named_before_any_test(project: Project) -> None:
    seeded(project, "", "CREATE PUBLICATION changes FOR TABLE users")
    project.tests(
        """
        def test_first(alchemy_session):
            pass


        def test_second(alchemy_session):
            pass
        """
    )
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_first*",
            "*the recreate strategy cannot rebuild publication of table public.users in "
            "publication changes, which depends on tables it drops*",
        ]
    )


@postgresql_only
def test_a_rebuild_that_fails_says_why_on_the_test(project: Project) -> None:
    seeded(
        project,
        "",
        "CREATE TYPE mood AS ENUM ('happy', 'sad')",
        "CREATE TABLE moods (id serial PRIMARY KEY, mood mood)",
    )
    project.tests(
        """
        def test_drops_a_type_the_schema_needs(alchemy_connection):
            alchemy_connection.exec_driver_sql("DROP TYPE mood CASCADE")
            alchemy_connection.commit()
        """
    )
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_drops_a_type_the_schema_needs*",
            "*the recreate strategy could not rebuild the test database's tables: type "
            '"public.mood" does not exist, running *CREATE TABLE public.moods*',
        ]
    )
