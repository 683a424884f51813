"""Seed data in layers: ``@pytest_alchemy.layer`` end to end.

Each generated project seeds rows in a layer (class, module, package or session
scope, nested), and its tests check that every test of the scope sees them, that
what one test changes is gone at the next, and that a test outside the scope sees
none. After the run the (kept) test database is checked out of band: a layer is
rolled back, never committed, so every table is empty. The app's own sessions and
a FastAPI app logging a user in write into the layer too; misuses (a strategy that
cannot run in a layer, an async test on another loop than its layer) are explained.
"""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from .helpers import (
    INI,
    Project,
    backend_marks,
    failure_reports,
    postgresql_only,
    sqlite_only,
)

COUNT = """
from sqlalchemy import delete, func, select

from models import User


def names(session):
    return sorted(session.scalars(select(User.name)))
"""


def assert_empty_after(project: Project) -> None:
    """Out of band: nothing of any layer was committed."""
    for table in ("users", "vendors", "applications"):
        assert project.sql(f"SELECT count(*) FROM {table}")[0][0] == 0, table


def assert_no_leaks(output: str) -> None:
    assert "0 leaks" in output
    assert "left changes in the database" not in output


MODULE_LAYER = (
    COUNT
    + """
import pytest
import pytest_alchemy


@pytest_alchemy.layer(scope="module")
def seeded(alchemy_session):
    alchemy_session.add_all([User(name="ada"), User(name="bob")])
    alchemy_session.commit()
    return "seeded"


def test_sees_the_layer(seeded, alchemy_session):
    assert seeded == "seeded"
    assert names(alchemy_session) == ["ada", "bob"]


def test_deletes_a_layer_row_and_adds_one(seeded, alchemy_session):
    alchemy_session.execute(delete(User).where(User.name == "ada"))
    alchemy_session.add(User(name="eve"))
    alchemy_session.commit()
    assert names(alchemy_session) == ["bob", "eve"]


def test_the_next_test_sees_the_layer_again(seeded, alchemy_connection):
    assert sorted(alchemy_connection.scalars(select(User.name))) == ["ada", "bob"]


def test_a_test_of_the_module_that_did_not_ask_sees_it_too(alchemy_session):
    assert names(alchemy_session) == ["ada", "bob"]
"""
)

NEXT_MODULE = (
    COUNT
    + """
def test_the_next_module_sees_none(alchemy_session):
    assert names(alchemy_session) == []
"""
)


def test_module_layer_is_seen_by_its_tests_and_undone_after(project: Project) -> None:
    project.tests(MODULE_LAYER, "test_a_layer.py")
    project.tests(NEXT_MODULE, "test_b_next.py")
    result = project.run("-p", "no:randomly", "--alchemy-keep-db")
    result.assert_outcomes(passed=5)
    assert_no_leaks(result.stdout.str())
    assert_empty_after(project)


KEPT_SAVEPOINT = (
    COUNT
    + """
import pytest
import pytest_alchemy
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

STATEMENTS = []


@event.listens_for(Engine, "before_cursor_execute")
def record(connection, cursor, statement, *args):
    STATEMENTS.append(statement)


@pytest_alchemy.layer(scope="module")
def seeded(alchemy_session):
    alchemy_session.add(User(name="ada"))
    alchemy_session.commit()
    # Reading after the commit leaves the layer's session in a savepoint of its own.
    assert names(alchemy_session) == ["ada"]


def test_writes(seeded, alchemy_session):
    alchemy_session.add(User(name="bob"))
    alchemy_session.commit()
    assert names(alchemy_session) == ["ada", "bob"]


def test_a_failing_statement(seeded, alchemy_connection):
    alchemy_connection.execute(text("INSERT INTO users (name) VALUES ('eve')"))
    with pytest.raises(DBAPIError):
        alchemy_connection.execute(text("SELECT * FROM no_such_table"))


def test_writes_again(seeded, alchemy_session):
    alchemy_session.add(User(name="cy"))
    alchemy_session.flush()
    assert names(alchemy_session) == ["ada", "cy"]


def test_the_tests_shared_one_savepoint(seeded, alchemy_session):
    assert names(alchemy_session) == ["ada"]
    set_by_the_layer = [s for s in STATEMENTS if s.startswith("SAVEPOINT alchemy_test")]
    assert len(set_by_the_layer) == 1, STATEMENTS
"""
)


def test_the_layers_tests_share_one_savepoint_it_keeps(project: Project) -> None:
    """Each test is rolled back to the same savepoint, which stays for the next one:
    also after a statement failed, and with the layer's own session in a savepoint."""
    project.tests(KEPT_SAVEPOINT, "test_a_layer.py")
    project.tests(NEXT_MODULE, "test_b_next.py")
    result = project.run("-p", "no:randomly", "--alchemy-keep-db")
    result.assert_outcomes(passed=5)
    assert_no_leaks(result.stdout.str())
    assert_empty_after(project)


NESTED_CONFTEST = (
    COUNT
    + """
import pytest
import pytest_alchemy


@pytest_alchemy.layer(scope="session")
def everyone(alchemy_session):
    alchemy_session.add(User(name="session"))
    alchemy_session.commit()
"""
)

PACKAGE_CONFTEST = (
    COUNT
    + """
import pytest_alchemy


@pytest_alchemy.layer(scope="package")
def package_rows(everyone, alchemy_sessionmaker):
    with alchemy_sessionmaker() as session:
        session.add(User(name="package"))
        session.commit()
"""
)

NESTED_TESTS = (
    COUNT
    + """
import pytest
import pytest_alchemy


@pytest_alchemy.layer(scope="module")
def module_rows(package_rows, alchemy_connection):
    alchemy_connection.execute(User.__table__.insert().values(name="module"))


@pytest_alchemy.layer(scope="class")
def class_rows(module_rows, alchemy_session):
    alchemy_session.add(User(name="class"))
    alchemy_session.flush()
    yield
    # The teardown runs inside the layer too.
    assert "class" in names(alchemy_session)


def test_module(module_rows, alchemy_session):
    assert names(alchemy_session) == ["module", "package", "session"]


class TestClass:
    def test_class(self, class_rows, alchemy_session):
        assert names(alchemy_session) == ["class", "module", "package", "session"]
        alchemy_session.execute(delete(User))
        assert names(alchemy_session) == []

    def test_class_again(self, class_rows, alchemy_session):
        assert names(alchemy_session) == ["class", "module", "package", "session"]


def test_after_the_class(alchemy_session):
    assert names(alchemy_session) == ["module", "package", "session"]
"""
)

SECOND_PACKAGE_TESTS = (
    COUNT
    + """
def test_second_package(everyone, alchemy_session):
    assert names(alchemy_session) == ["session"]
"""
)

LAST_MODULE = (
    COUNT
    + """
def test_still_in_the_session_layer(alchemy_session):
    assert names(alchemy_session) == ["session"]
"""
)


def test_class_module_package_and_session_layers_nest(project: Project) -> None:
    project.write("conftest.py", NESTED_CONFTEST)
    project.write("pkg_a/__init__.py", "")
    project.write("pkg_a/conftest.py", PACKAGE_CONFTEST)
    project.write("pkg_a/test_nested.py", NESTED_TESTS)
    project.write("pkg_b/__init__.py", "")
    project.write("pkg_b/test_second.py", SECOND_PACKAGE_TESTS)
    project.write("test_z_last.py", LAST_MODULE)
    result = project.run("-p", "no:randomly", "--alchemy-keep-db")
    result.assert_outcomes(passed=6)
    assert_no_leaks(result.stdout.str())
    assert_empty_after(project)


APP = """
import secrets

from fastapi import Depends, FastAPI, Header, HTTPException
from sqlalchemy import ForeignKey, String, create_engine, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from models import Base, User


class Token(Base):
    __tablename__ = "tokens"
    value: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))


engine = create_engine({url!r})
SessionLocal = sessionmaker(bind=engine)
app = FastAPI()


def get_db():
    with SessionLocal() as session:
        yield session


@app.post("/signup")
def signup(name: str, db: Session = Depends(get_db)):
    db.add(User(name=name))
    db.commit()
    return {{"ok": True}}


@app.post("/login")
def login(name: str, db: Session = Depends(get_db)):
    user = db.scalars(select(User).where(User.name == name)).one()
    token = Token(value=secrets.token_hex(8), user_id=user.id)
    db.add(token)
    db.commit()
    return {{"token": token.value}}


@app.get("/me")
def me(authorization: str = Header(), db: Session = Depends(get_db)):
    token = db.get(Token, authorization)
    if token is None:
        raise HTTPException(401)
    return {{"name": db.get(User, token.user_id).name}}


@app.post("/notes")
def add_note(text: str, authorization: str = Header(), db: Session = Depends(get_db)):
    db.add(User(name=text))
    db.commit()
    return {{"ok": True}}
"""

APP_SESSIONS = "alchemy_app_sessions = myapp:SessionLocal"

LOGIN_TESTS = """
import pytest
import pytest_alchemy
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from myapp import SessionLocal, Token, app
from models import User


@pytest.fixture(scope="module")
def client():
    with TestClient(app) as client:
        yield client


# The common shape of real suites, unchanged apart from the decorator.
@pytest_alchemy.layer(scope="module")
def token(client):
    assert client.post("/signup", params={"name": "ada"}).status_code == 200
    return client.post("/login", params={"name": "ada"}).json()["token"]


def test_logged_in(client, token):
    assert client.get("/me", headers={"Authorization": token}).json() == {"name": "ada"}
    client.post("/notes", params={"text": "note"}, headers={"Authorization": token})


def test_logged_in_again_and_the_note_is_gone(client, token):
    assert client.get("/me", headers={"Authorization": token}).json() == {"name": "ada"}
    with SessionLocal() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1
        assert session.scalar(select(func.count()).select_from(Token)) == 1
"""

AFTER_LOGIN = """
from sqlalchemy import func, select

from myapp import SessionLocal, Token
from models import User


def test_nobody_logged_in_here(alchemy_session):
    assert alchemy_session.scalar(select(func.count()).select_from(User)) == 0
    assert alchemy_session.scalar(select(func.count()).select_from(Token)) == 0
"""


def test_a_module_fixture_that_logs_in_through_the_app(project: Project) -> None:
    # The app's engine points at the app database; the plugin rebinds its sessions.
    project.write("myapp.py", APP.format(url=project.url))
    ini = INI.replace("models:Base", "myapp:Base")
    project.pytester.makefile(".ini", pytest=ini.format(extra=APP_SESSIONS))
    project.tests(LOGIN_TESTS, "test_a_login.py")
    project.tests(AFTER_LOGIN, "test_b_after.py")
    result = project.run("-p", "no:randomly", "--alchemy-keep-db")
    result.assert_outcomes(passed=3)
    assert_no_leaks(result.stdout.str())
    assert_empty_after(project)
    assert project.sql("SELECT count(*) FROM tokens")[0][0] == 0


@sqlite_only
def test_a_strategy_that_cannot_run_in_a_layer_is_an_error(project: Project) -> None:
    project.tests(
        MODULE_LAYER
        + """

@pytest.mark.alchemy_db(isolation="none")
def test_marked_none(seeded, alchemy_session):
    pass
""",
        "test_a_layer.py",
    )
    first, marked = "test_a_layer.py::test_sees_the_layer", "test_a_layer.py::test_marked_none"
    result = project.run("-p", "no:randomly", first, marked)
    result.assert_outcomes(passed=1, errors=1)
    reports = failure_reports(result.stdout.str())
    assert "uses the isolation strategy 'none', which cannot run inside the layer seeded" in (
        " ".join(reports.split())
    )
    assert "alchemy_isolation = savepoint" in reports
    assert "Traceback" not in reports

    result = project.run("-p", "no:randomly", "--alchemy-isolation=none", first)
    result.assert_outcomes(errors=1)
    reports = " ".join(failure_reports(result.stdout.str()).split())
    assert "the layer seeded uses the isolation strategy 'none'" in reports


# -- async ---------------------------------------------------------------------------

ASYNC_APP = """
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from models import User

AsyncSessionLocal = async_sessionmaker(create_async_engine({url!r}))


async def signup(name):
    async with AsyncSessionLocal() as session:
        session.add(User(name=name))
        await session.commit()
"""

ASYNC_LAYER = """
import asyncio

import pytest
import pytest_alchemy
from sqlalchemy import delete, func, select

import myapp
from models import User

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def names(session):
    return sorted((await session.scalars(select(User.name))).all())


@pytest_alchemy.layer(scope="module")
async def seeded(alchemy_async_session):
    alchemy_async_session.add(User(name="ada"))
    await alchemy_async_session.commit()
    await myapp.signup("bob")          # the app's own sessions write into the layer
    yield
    assert await names(alchemy_async_session) == ["ada", "bob"]


async def test_sees_the_layer(seeded, alchemy_async_session):
    assert await names(alchemy_async_session) == ["ada", "bob"]
    await alchemy_async_session.execute(delete(User))
    await alchemy_async_session.commit()
    await myapp.signup("eve")
    assert await names(alchemy_async_session) == ["eve"]


async def test_the_next_test_sees_the_layer_again(seeded, alchemy_async_session):
    assert await names(alchemy_async_session) == ["ada", "bob"]
"""

ASYNC_NEXT = """
import pytest
from sqlalchemy import select

from models import User


@pytest.mark.asyncio
async def test_the_next_module_sees_none(alchemy_async_session):
    assert (await alchemy_async_session.scalars(select(User.name))).all() == []
"""

ASYNC_DRIVERS = [
    pytest.param("sqlite", "sqlite+aiosqlite", id="aiosqlite"),
    pytest.param(
        "postgresql", "postgresql+asyncpg", id="asyncpg", marks=backend_marks("postgresql")
    ),
]


def async_url(project: Project, driver: str) -> str:
    return make_url(project.url).set(drivername=driver).render_as_string(hide_password=False)


@pytest.mark.parametrize(("backend", "driver"), ASYNC_DRIVERS)
def test_async_layer_on_its_loop(project: Project, driver: str) -> None:
    url = async_url(project, driver)
    project.write("myapp.py", ASYNC_APP.format(url=url))
    project.ini("alchemy_app_sessions = myapp:AsyncSessionLocal")
    project.tests(ASYNC_LAYER, "test_a_layer.py")
    project.tests(ASYNC_NEXT, "test_b_next.py")
    result = project.run("--alchemy-url", url, "-p", "no:randomly", "--alchemy-keep-db", url=False)
    result.assert_outcomes(passed=3)
    assert_no_leaks(result.stdout.str())
    assert_empty_after(project)


@sqlite_only
def test_an_async_test_on_another_loop_than_its_layer(project: Project) -> None:
    url = async_url(project, "sqlite+aiosqlite")
    project.write("myapp.py", ASYNC_APP.format(url=url))
    project.ini("alchemy_app_sessions = myapp:AsyncSessionLocal")
    project.tests(
        ASYNC_LAYER
        + """

@pytest.mark.asyncio(loop_scope="function")
async def test_on_its_own_loop(seeded, alchemy_async_session):
    pass
""",
        "test_a_layer.py",
    )
    result = project.run("--alchemy-url", url, "-p", "no:randomly", url=False)
    result.assert_outcomes(passed=2, errors=1)
    reports = " ".join(failure_reports(result.stdout.str()).split())
    assert "runs on the pytest-asyncio event loop of scope 'function'" in reports
    assert "the module-scoped async layer seeded keeps its connection on the loop" in reports
    assert "loop_scope='module'" in reports
    assert "Traceback" not in reports


# -- seed rows committed behind the plugin's back ----------------------------------------

OWN_ENGINE_LAYER = (
    COUNT
    + """
import pytest_alchemy
from sqlalchemy import create_engine, insert


@pytest_alchemy.layer(scope="module")
def seeded(alchemy_database, alchemy_session):
    engine = create_engine(alchemy_database.url)
    with engine.begin() as connection:          # committed for real, outside the layer
        connection.execute(insert(User).values(name="own engine"))
    engine.dispose()
    alchemy_session.add(User(name="layer"))
    alchemy_session.commit()


def test_one(seeded, alchemy_session):
    assert names(alchemy_session) == ["layer", "own engine"]


def test_two(seeded, alchemy_session):
    assert names(alchemy_session) == ["layer", "own engine"]
"""
)


def test_a_layer_that_commits_through_its_own_engine_is_told_at_its_end(
    project: Project,
) -> None:
    project.tests(OWN_ENGINE_LAYER, "test_a_layer.py")
    project.tests(NEXT_MODULE, "test_b_next.py")
    result = project.run("-p", "no:randomly", "--alchemy-keep-db")
    # The tests themselves pass; the layer's teardown (after the last) fails, alone.
    result.assert_outcomes(passed=3, errors=1)
    reports = " ".join(failure_reports(result.stdout.str()).split())
    assert "ERROR at teardown of test_two" in result.stdout.str()
    assert "the module-scoped layer seeded left changes in the database" in reports
    assert "users (0 -> 1 rows, 1 added)" in reports
    assert "put these tables back to their baseline" in reports
    assert reports.count("left changes in the database") == 1
    assert_empty_after(project)


SESSION_SEED = """
import pytest
from sqlalchemy import create_engine, insert

from models import User


@pytest.fixture(scope="session")
def seed(alchemy_database):
    engine = create_engine(alchemy_database.url)
    with engine.begin() as connection:
        connection.execute(insert(User).values(name="seed"))
    engine.dispose()


def test_uses_the_seed(seed, alchemy_session):
    pass
"""


# On PostgreSQL the first test's probe sees every commit since the baseline.
@postgresql_only
def test_seed_committed_by_a_wider_fixture_points_to_the_layer(project: Project) -> None:
    project.ini("alchemy_block_unmarked = false")
    project.tests(SESSION_SEED)
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(passed=1, errors=1)
    reports = " ".join(failure_reports(result.stdout.str()).split())
    assert "test_uses_the_seed left changes in the database" in reports
    assert "make that fixture a layer, @pytest_alchemy.layer(scope=...)" in reports
    assert "alchemy_blocker.unblock()" in reports


@sqlite_only
def test_the_blocker_points_wider_fixtures_to_the_layer(project: Project) -> None:
    project.tests(SESSION_SEED)
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(errors=1)
    reports = " ".join(failure_reports(result.stdout.str()).split())
    assert "the session-scoped fixture seed" in reports
    assert "make it a layer of seed data, @pytest_alchemy.layer(scope=...)" in reports


ORDER_TESTS = (
    COUNT
    + """
import pytest_alchemy


@pytest_alchemy.layer(scope="session")
def everyone(alchemy_session):
    alchemy_session.add(User(name="session"))


@pytest_alchemy.layer(scope="module")
def module_rows(alchemy_session):
    alchemy_session.add(User(name="module"))


def test_first(module_rows, alchemy_session):
    assert names(alchemy_session) == ["module"]


def test_then_the_wider_one(everyone, alchemy_session):
    pass
"""
)


@sqlite_only
def test_a_wider_layer_set_up_inside_a_narrower_one_is_an_error(project: Project) -> None:
    project.tests(ORDER_TESTS)
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(passed=1, errors=1)
    reports = " ".join(failure_reports(result.stdout.str()).split())
    assert (
        "the session-scoped layer everyone is set up while the module-scoped layer "
        "module_rows is set up, but it outlives it" in reports
    )
    assert "autouse=True in a conftest.py" in reports
    assert "Traceback" not in reports


ASYNC_NESTED_CONFTEST = """
import pytest_alchemy

from models import User


@pytest_alchemy.layer(scope="session", loop_scope="session")
async def everyone(alchemy_async_session):
    alchemy_async_session.add(User(name="session"))
    await alchemy_async_session.commit()
"""

ASYNC_NESTED_TESTS = """
import pytest
import pytest_alchemy
from sqlalchemy import select

from models import User

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_alchemy.layer(scope="module", loop_scope="session")
async def module_rows(everyone, alchemy_async_connection):
    await alchemy_async_connection.execute(User.__table__.insert().values(name="module"))


async def names(session):
    return sorted((await session.scalars(select(User.name))).all())


async def test_both(module_rows, alchemy_async_session):
    assert await names(alchemy_async_session) == ["module", "session"]


async def test_both_again(module_rows, alchemy_async_session):
    assert await names(alchemy_async_session) == ["module", "session"]
"""

ASYNC_NESTED_AFTER = """
import pytest
from sqlalchemy import select

from models import User


@pytest.mark.asyncio(loop_scope="session")
async def test_only_the_session_layer(alchemy_async_session):
    assert (await alchemy_async_session.scalars(select(User.name))).all() == ["session"]
"""


@pytest.mark.parametrize(("backend", "driver"), ASYNC_DRIVERS)
def test_async_layers_nest_on_the_session_loop(project: Project, driver: str) -> None:
    url = async_url(project, driver)
    project.write("conftest.py", ASYNC_NESTED_CONFTEST)
    project.tests(ASYNC_NESTED_TESTS, "test_a_nested.py")
    project.tests(ASYNC_NESTED_AFTER, "test_b_after.py")
    result = project.run("--alchemy-url", url, "-p", "no:randomly", "--alchemy-keep-db", url=False)
    result.assert_outcomes(passed=3)
    assert_no_leaks(result.stdout.str())
    assert_empty_after(project)


ENDS_THE_LAYER = (
    COUNT
    + """
import pytest_alchemy


@pytest_alchemy.layer(scope="module")
def seeded(alchemy_session):
    alchemy_session.add(User(name="ada"))


def test_commits_the_connection(seeded, alchemy_connection):
    alchemy_connection.commit()


def test_after_it(seeded, alchemy_session):
    pass
"""
)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=backend_marks("postgresql"))]
)
def test_a_test_that_commits_the_layers_connection(project: Project) -> None:
    project.tests(ENDS_THE_LAYER, "test_a_layer.py")
    project.tests(NEXT_MODULE, "test_b_next.py")
    result = project.run("-p", "no:randomly", "--alchemy-keep-db")
    reports = " ".join(failure_reports(result.stdout.str()).split())
    # Reported on the test that did it, then on the next test of the layer; the rows
    # it made permanent are found when the layer ends and put back.
    assert "test_a_layer.py::test_commits_the_connection: the test ended the transaction" in reports
    assert "pytest-alchemy: test_a_layer.py::test_commits_the_connection: pytest" not in reports
    assert "an earlier test ended the transaction of the module-scoped layer seeded" in reports
    assert "the module-scoped layer seeded left changes in the database" in reports
    assert "users (0 -> 1 rows, 1 added)" in reports
    assert "Traceback" not in reports
    assert "1 leaks" in result.stdout.str()
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] == 2  # the two tests' calls ran, and the next module's test
    assert_empty_after(project)


ASYNC_LAYER_SYNC_TEST = """
import pytest
import pytest_alchemy

from models import User


@pytest_alchemy.layer(scope="module")
async def seeded(alchemy_async_session):
    alchemy_async_session.add(User(name="ada"))


def test_sync(seeded, alchemy_session):
    pass
"""


@sqlite_only
def test_a_sync_test_inside_an_async_layer_is_an_error(project: Project) -> None:
    project.tests(ASYNC_LAYER_SYNC_TEST)
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(errors=1)
    reports = " ".join(failure_reports(result.stdout.str()).split())
    assert "test_app.py::test_sync is a sync test, but it runs while the module-scoped" in reports
    assert "Make the test async def (on the layer's event loop: loop_scope='module')" in reports


FRESH_EACH_RUN = (
    COUNT
    + """
import uuid

import pytest_alchemy

RUN = uuid.uuid4().hex


@pytest_alchemy.layer(scope="module")
def seeded(alchemy_session):
    alchemy_session.add(User(name=RUN[:40]))


def test_only_this_runs_rows(seeded, alchemy_session):
    assert names(alchemy_session) == [RUN[:40]]
"""
)


@sqlite_only
def test_layers_are_built_anew_with_reuse_db(project: Project) -> None:
    project.tests(FRESH_EACH_RUN)
    for _ in range(2):
        result = project.run("-p", "no:randomly", "--alchemy-reuse-db")
        result.assert_outcomes(passed=1)
    assert "reused" in result.stdout.str()
    assert_empty_after(project)


@pytest.mark.parametrize("mode", ["strict", "auto"])
@sqlite_only
def test_async_layers_in_either_asyncio_mode(project: Project, mode: str) -> None:
    url = async_url(project, "sqlite+aiosqlite")
    project.write("myapp.py", ASYNC_APP.format(url=url))
    project.ini("alchemy_app_sessions = myapp:AsyncSessionLocal")
    project.tests(ASYNC_LAYER, "test_a_layer.py")
    result = project.run("--alchemy-url", url, "-o", f"asyncio_mode={mode}", url=False)
    result.assert_outcomes(passed=2)


@sqlite_only
@pytest.mark.parametrize(
    ("declaration", "said"),
    [
        ('@pytest_alchemy.layer(scope="function")', "a layer's scope is one of class, module"),
        ("@pytest_alchemy.layer", "asks for alchemy_async_session"),
    ],
    ids=["function-scope", "wrong-kind"],
)
def test_a_layer_declared_wrong_is_explained(project: Project, declaration: str, said: str) -> None:
    project.tests(
        f"""
import pytest_alchemy


{declaration}
def seeded(alchemy_async_session):
    pass


def test_nothing(seeded):
    pass
"""
    )
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(errors=1)
    assert said in " ".join(result.stdout.str().split())


STATE_IN_A_LAYER = (
    COUNT
    + """
import pytest_alchemy
from sqlalchemy import text


@pytest_alchemy.layer(scope="module")
def seeded(alchemy_session):
    alchemy_session.add(User(name="ada"))


def test_leaves_session_state(seeded, alchemy_connection):
    alchemy_connection.execute(text("SELECT pg_advisory_lock(42)"))
    alchemy_connection.execute(text("PREPARE left_behind AS SELECT 1"))
"""
)

STATE_AFTER = """
from sqlalchemy import text


def test_finds_none(alchemy_connection):
    locks = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
    assert alchemy_connection.scalar(text(locks)) == 0
    prepared = "SELECT count(*) FROM pg_prepared_statements WHERE name = 'left_behind'"
    assert alchemy_connection.scalar(text(prepared)) == 0
"""


@postgresql_only
def test_session_state_left_in_a_layer_is_reset_when_it_ends(project: Project) -> None:
    project.tests(STATE_IN_A_LAYER, "test_a_layer.py")
    project.tests(STATE_AFTER, "test_b_after.py")
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(passed=2)
    assert "1 connection resets" in result.stdout.str()


@sqlite_only
@pytest.mark.parametrize(
    ("source", "said"),
    [
        (
            "class TestIt:\n"
            "    @pytest_alchemy.layer\n"
            "    def seeded(self, alchemy_session):\n"
            "        pass\n",
            "@pytest_alchemy.layer on the method TestIt.seeded: define the layer at module level",
        ),
        (
            '@pytest_alchemy.layer(scope="module", loop_scope="module")\n'
            "def seeded(alchemy_session):\n"
            "    pass\n",
            "the layer seeded is a plain def fixture: loop_scope is for async layers.",
        ),
        (
            '@pytest_alchemy.layer(scope="module", loop_scope="class")\n'
            "async def seeded(alchemy_async_session):\n"
            "    pass\n",
            "the module-scoped layer seeded cannot run on the 'class' event loop, which ends "
            "before it: give it loop_scope='module' or wider.",
        ),
    ],
    ids=["method", "sync-loop-scope", "narrow-loop"],
)
def test_a_layer_declared_wrong_stops_the_collection_with_the_fix(
    project: Project, source: str, said: str
) -> None:
    project.tests(f"import pytest_alchemy\n\n\n{source}\n\ndef test_nothing():\n    pass\n")
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(errors=1)
    assert said in " ".join(result.stdout.str().split())


@sqlite_only
def test_a_layer_that_yields_twice_is_a_clear_error(project: Project) -> None:
    project.tests(
        """
import pytest_alchemy
from models import User


@pytest_alchemy.layer
def seeded(alchemy_session):
    alchemy_session.add(User(name="ada"))
    yield
    yield


def test_sees_it(seeded, alchemy_session):
    assert alchemy_session.query(User).count() == 1
"""
    )
    result = project.run("-p", "no:randomly", "--alchemy-reuse-db")
    result.assert_outcomes(passed=1, errors=1)
    assert "the layer seeded yielded twice: a fixture yields once." in result.stdout.str()
    assert_empty_after(project)


@sqlite_only
def test_savepoints_a_test_leaves_open_on_a_layer_are_rolled_back(project: Project) -> None:
    project.tests(
        """
import pytest_alchemy
from sqlalchemy import insert, select
from models import User


@pytest_alchemy.layer(scope="module")
def seeded(alchemy_session):
    alchemy_session.add(User(name="ada"))


def test_leaves_savepoints_open(seeded, alchemy_connection):
    alchemy_connection.begin_nested()
    alchemy_connection.execute(insert(User).values(name="bob"))
    alchemy_connection.begin_nested()
    alchemy_connection.execute(insert(User).values(name="eve"))


def test_sees_only_the_layer(seeded, alchemy_connection):
    assert list(alchemy_connection.scalars(select(User.name))) == ["ada"]
""",
        "test_a_layer.py",
    )
    result = project.run("-p", "no:randomly", "--alchemy-reuse-db")
    result.assert_outcomes(passed=2)
    assert "Traceback" not in result.stdout.str()
    assert_empty_after(project)
