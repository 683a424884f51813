"""FastAPI apps: the app's session dependency overridden per test, objects the app makes at
run time bound from a fixture, and both put back after every test, also a failing one.

Each generated project is a small FastAPI app whose own engine points at a database
that does not exist (a host that cannot be resolved, on PostgreSQL; a file in a missing
directory, on SQLite): every request that reaches the database through it would fail,
so a passing test proves the request went through the test's connection. What the
tests committed is checked out of band on the test database afterwards.
"""

from __future__ import annotations

import pytest

from .helpers import INI, Project, sqlite_only

APP = """
from contextlib import asynccontextmanager

from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI
from sqlalchemy import create_engine, func, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from models import User

NOWHERE = SYNC_PLACE
ASYNC_NOWHERE = ASYNC_PLACE

engine = create_engine(NOWHERE)
SessionLocal = sessionmaker(bind=engine)


@asynccontextmanager
async def lifespan(app):
    # The app makes its async engine when it starts: never asked to connect in a test.
    app.state.engine = create_async_engine(ASYNC_NOWHERE)
    app.state.sessionmaker = async_sessionmaker(app.state.engine, expire_on_commit=False)
    yield
    await app.state.engine.dispose()


app = FastAPI(lifespan=lifespan)


def get_db():
    with SessionLocal() as session:
        yield session


async def get_async_db():
    async with app.state.sessionmaker() as session:
        yield session


def record_signup(name):
    # A background task on the app's global sessionmaker, after the response.
    with SessionLocal() as session:
        session.add(User(name=f"welcome {name}"))
        session.commit()


@app.post("/users/{name}")
def create_user(name: str, tasks: BackgroundTasks, db: Session = Depends(get_db)):
    db.add(User(name=name))
    db.commit()
    tasks.add_task(record_signup, name)
    return {"users": db.scalar(select(func.count()).select_from(User))}


@app.get("/users")
def count_users(db: Session = Depends(get_db)):
    return {"users": db.scalar(select(func.count()).select_from(User))}


@app.get("/session")
def which_session(db: Session = Depends(get_db)):
    return {"id": id(db)}


@app.post("/users/{name}/draft")
def draft_user(name: str, db: Session = Depends(get_db)):
    # Added and flushed, never committed: lost with the request's own session.
    db.add(User(name=name))
    db.flush()
    return {}


# The async routes on a router of their own, included into the app.
router = APIRouter(prefix="/async")


@router.post("/users/{name}")
async def create_user_async(name: str, db=Depends(get_async_db)):
    user = User(name=name)
    db.add(user)
    await db.commit()
    # Read after the commit: the session does not expire what it committed.
    return {"users": await db.scalar(select(func.count()).select_from(User)), "name": user.name}


@router.get("/users")
async def count_users_async(db=Depends(get_async_db)):
    return {"users": await db.scalar(select(func.count()).select_from(User))}


@router.get("/session")
async def which_session_async(db=Depends(get_async_db)):
    return {"id": id(db)}


app.include_router(router)
"""

SYNC_TESTS = """
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, insert, select
from sqlalchemy.orm import sessionmaker

import app as myapp
from models import User


@pytest.fixture
def client(alchemy_override):
    alchemy_override(myapp.app, myapp.get_db)
    with TestClient(myapp.app) as client:
        yield client


def test_a_request_commits_inside_the_test(client, alchemy_session):
    assert client.post("/users/ada").json() == {"users": 1}
    # The route's commit and the background task's are the test's to see...
    names = alchemy_session.scalars(select(User.name).order_by(User.id)).all()
    assert names == ["ada", "welcome ada"]


def test_the_next_test_starts_clean(client, alchemy_session):
    # ...and undone afterwards.
    assert client.get("/users").json() == {"users": 0}
    assert alchemy_session.scalar(select(func.count()).select_from(User)) == 0


def test_two_apps_objects_bound_in_one_test(alchemy_bind, alchemy_session):
    first = alchemy_bind(sessionmaker(bind=create_engine(myapp.NOWHERE)))
    second = alchemy_bind(create_engine(myapp.NOWHERE))
    with first() as session:
        session.add(User(name="first"))
        session.commit()
    with second.begin() as connection:
        connection.execute(insert(User).values(name="second"))
    assert sorted(alchemy_session.scalars(select(User.name))) == ["first", "second"]


def test_each_request_has_a_session_of_its_own(client, alchemy_session):
    first, second = (client.get("/session").json()["id"] for _ in range(2))
    assert id(alchemy_session) not in (first, second)
    # What a request flushed but never committed is gone with its session.
    client.post("/users/hopper/draft")
    assert alchemy_session.scalar(select(func.count()).select_from(User)) == 0


def test_a_failing_test(client):
    client.post("/users/grace")
    raise RuntimeError("the test fails after its request")


def test_the_override_is_gone_after_a_failure(alchemy_session):
    assert myapp.get_db not in myapp.app.dependency_overrides
    assert myapp.app.dependency_overrides == {}
"""


def fastapi_project(project: Project, extra_ini: str = "") -> None:
    """The app on a database nothing can reach, and the ini the tests need."""
    if project.backend == "sqlite":
        nowhere = f"sqlite:///{project.path / 'missing' / 'app.db'}"
        async_nowhere = nowhere.replace("sqlite://", "sqlite+aiosqlite://")
    else:
        nowhere = "postgresql+psycopg://app@db.invalid/app"
        async_nowhere = "postgresql+asyncpg://app@db.invalid/app"
    app = APP.replace("ASYNC_PLACE", repr(async_nowhere)).replace("SYNC_PLACE", repr(nowhere))
    project.write("app.py", app)
    project.write(
        "pytest.ini",
        INI.format(extra=f"alchemy_app_sessions = app:SessionLocal\n{extra_ini}"),
    )


def test_a_sync_app_through_testclient(project: Project) -> None:
    fastapi_project(project, "alchemy_keep_db = true")
    project.tests(SYNC_TESTS)
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(["*the test fails after its request*"])
    # Out of band: every request committed inside a test, and each was undone.
    assert project.sql("SELECT count(*) FROM users") == [(0,)]


ASYNC_TESTS = """
import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, select

import app as myapp
from models import User


@pytest_asyncio.fixture
async def client(alchemy_async_override):
    alchemy_async_override(myapp.app, myapp.get_async_db)
    # ASGITransport runs no lifespan: app.state.sessionmaker would not even exist.
    transport = httpx.ASGITransport(app=myapp.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.mark.asyncio
async def test_an_async_route_commits_inside_the_test(client, alchemy_async_session):
    response = await client.post("/async/users/ada")
    assert response.json() == {"users": 1, "name": "ada"}
    count = select(func.count()).select_from(User)
    assert await alchemy_async_session.scalar(count) == 1


@pytest.mark.asyncio
async def test_the_next_async_test_starts_clean(client):
    assert (await client.get("/async/users")).json() == {"users": 0}


@pytest.mark.asyncio
async def test_lifespan_sessionmaker_bound_from_a_fixture(alchemy_async_bind):
    # The app started (its lifespan made the engine and sessionmaker): bound at run time.
    async with myapp.lifespan(myapp.app):
        maker = alchemy_async_bind(myapp.app.state.sessionmaker)
        async with maker() as session:
            session.add(User(name="from the lifespan's sessionmaker"))
            await session.commit()
            count = select(func.count()).select_from(User)
            assert await session.scalar(count) == 1


def test_bound_objects_are_put_back(alchemy_session):
    # The lifespan's sessionmaker is bound to its own engine again, the override gone.
    assert myapp.app.state.sessionmaker.kw["bind"] is myapp.app.state.engine
    assert myapp.app.dependency_overrides == {}
"""


def test_an_async_app_through_httpx(project: Project) -> None:
    fastapi_project(project, "alchemy_keep_db = true")
    project.tests(ASYNC_TESTS)
    project.run("-p", "no:randomly").assert_outcomes(passed=4)
    assert project.sql("SELECT count(*) FROM users") == [(0,)]


SHARED_TESTS = """
import httpx
import pytest
import pytest_asyncio
from fastapi.testclient import TestClient
from sqlalchemy import func, select

import app as myapp
from models import User


@pytest.fixture
def client(alchemy_override):
    alchemy_override(myapp.app, myapp.get_db, shared=SHARED)
    with TestClient(myapp.app) as client:
        yield client


def test_every_request_gets_the_tests_session(client, alchemy_session):
    assert client.get("/session").json() == {"id": id(alchemy_session)}
    assert client.get("/session").json() == {"id": id(alchemy_session)}


def test_what_a_request_flushed_is_the_tests_to_see(client, alchemy_session):
    client.post("/users/hopper/draft")
    assert alchemy_session.scalars(select(User.name)).all() == ["hopper"]


def test_commits_and_background_tasks_stay_inside_the_test(client, alchemy_session):
    assert client.post("/users/ada").json() == {"users": 1}
    names = alchemy_session.scalars(select(User.name).order_by(User.id)).all()
    assert names == ["ada", "welcome ada"]


def test_the_next_test_starts_clean(client, alchemy_session):
    assert client.get("/users").json() == {"users": 0}


def test_a_call_can_say_otherwise(alchemy_override, alchemy_session):
    alchemy_override(myapp.app, myapp.get_db, shared=not SHARED)
    with TestClient(myapp.app) as client:
        assert client.get("/session").json() != {"id": id(alchemy_session)}


@pytest_asyncio.fixture
async def async_client(alchemy_async_override):
    alchemy_async_override(myapp.app, myapp.get_async_db, shared=SHARED)
    transport = httpx.ASGITransport(app=myapp.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.mark.asyncio
async def test_async_requests_get_the_tests_async_session(async_client, alchemy_async_session):
    response = await async_client.get("/async/session")
    assert response.json() == {"id": id(alchemy_async_session)}
    assert (await async_client.post("/async/users/ada")).json() == {"users": 1, "name": "ada"}
    count = select(func.count()).select_from(User)
    assert await alchemy_async_session.scalar(count) == 1


def test_put_back(alchemy_session):
    assert myapp.app.dependency_overrides == {}
"""


@pytest.mark.parametrize("source", ["call", "ini"])
def test_requests_can_share_the_tests_session(project: Project, source: str) -> None:
    # shared=True in the call, or alchemy_override_sessions = shared for every call that
    # does not say (and shared=False then gives a request its own session again).
    if source == "ini":
        fastapi_project(project, "alchemy_override_sessions = shared\nalchemy_keep_db = true")
        tests = SHARED_TESTS.replace("shared=SHARED", "").replace(", )", ")")
        tests = tests.replace("not SHARED", "False")
    else:
        fastapi_project(project, "alchemy_keep_db = true")
        tests = SHARED_TESTS.replace("not SHARED", "False").replace("SHARED", "True")
    project.tests(tests)
    project.run("-p", "no:randomly").assert_outcomes(passed=7)
    assert project.sql("SELECT count(*) FROM users") == [(0,)]


INI_TESTS = """
from fastapi.testclient import TestClient

import app as myapp


def test_the_ini_override(alchemy_session):
    with TestClient(myapp.app) as client:
        assert client.post("/users/ada").json() == {"users": 1}


def test_undone(alchemy_session):
    with TestClient(myapp.app) as client:
        assert client.get("/users").json() == {"users": 0}


def test_no_override_outside_a_database_test():
    assert myapp.app.dependency_overrides == {}
"""


@pytest.mark.parametrize("sessions", ["per_request", "shared"])
def test_the_override_from_the_ini_file(project: Project, sessions: str) -> None:
    fastapi_project(
        project,
        "alchemy_overrides = app:app=app:get_db\nalchemy_keep_db = true\n"
        f"alchemy_override_sessions = {sessions}",
    )
    shared = sessions == "shared"
    project.tests(
        INI_TESTS
        + f"""

def test_which_session(alchemy_session):
    with TestClient(myapp.app) as client:
        shared = client.get("/session").json() == {{"id": id(alchemy_session)}}
    assert shared is {shared}
"""
    )
    project.run("-p", "no:randomly").assert_outcomes(passed=4)
    assert project.sql("SELECT count(*) FROM users") == [(0,)]


@sqlite_only
@pytest.mark.parametrize(
    ("call", "fragments"),
    [
        (
            "alchemy_override(myapp.app, len)",
            ["no route of the app depends on builtins:len", "app:get_db", "app:get_async_db"],
        ),
        ("alchemy_override(object(), myapp.get_db)", ["is not a FastAPI app"]),
        (
            "alchemy_override(myapp.app, myapp.get_async_db)",
            ["serves async code, in a sync test", "alchemy_async_override"],
        ),
        (
            "alchemy_bind(object())",
            ["alchemy_bind() was given a builtins.object", "It binds a sessionmaker"],
        ),
        (
            "alchemy_bind(myapp.app.state)",
            ["which pytest-alchemy cannot bind", "an Engine or AsyncEngine"],
        ),
    ],
    ids=["not-a-dependency", "not-an-app", "async-in-sync", "object", "state"],
)
def test_what_cannot_be_bound_is_said(project: Project, call: str, fragments: list[str]) -> None:
    fastapi_project(project)
    project.tests(
        f"""
        import app as myapp


        def test_it(alchemy_override, alchemy_bind):
            {call}
        """
    )
    result = project.run()
    result.assert_outcomes(failed=1)
    flat = " ".join(result.stdout.str().split())
    for fragment in fragments:
        assert fragment in flat
    assert "Traceback" not in flat


@sqlite_only
@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("app:app", "is not APP=DEPENDENCY"),
        ("app:app=app:nope", "has no attribute 'nope'"),
        ("app:app=app:record_signup", "no route of the app depends on app:record_signup"),
        (
            "app:app=app:get_db\nalchemy_override_sessions = always",
            "unknown value. Valid choices: per_request, shared",
        ),
    ],
)
def test_bad_ini_overrides_stop_the_run(project: Project, entry: str, fragment: str) -> None:
    fastapi_project(project, f"alchemy_overrides = {entry}")
    project.tests("def test_it(alchemy_session):\n    pass\n")
    result = project.run()
    assert result.ret != 0
    flat = " ".join((result.stdout.str() + result.stderr.str()).split())
    assert fragment in flat


@sqlite_only
def test_a_sync_dependency_in_an_async_test_is_said(project: Project) -> None:
    fastapi_project(project)
    project.tests(
        """
        import pytest

        import app as myapp


        @pytest.mark.asyncio
        async def test_it(alchemy_async_override):
            alchemy_async_override(myapp.app, myapp.get_db)
        """
    )
    result = project.run()
    result.assert_outcomes(failed=1)
    flat = " ".join(result.stdout.str().split())
    assert "serves sync code, in an async test. Bind it with alchemy_override" in flat


@sqlite_only
def test_an_old_release_is_said(project: Project) -> None:
    # What importlib.metadata reads first says FastAPI 0.99.0 is installed.
    fastapi_project(project, "alchemy_overrides = app:app=app:get_db")
    project.write("fastapi-0.99.0.dist-info/METADATA", "Name: fastapi\nVersion: 0.99.0\n")
    project.tests("def test_it(alchemy_session):\n    pass\n")
    result = project.run()
    assert result.ret != 0
    flat = " ".join((result.stdout.str() + result.stderr.str()).split())
    assert (
        "app:app=app:get_db comes from fastapi 0.99.0; pytest-alchemy binds it from fastapi "
        "0.100 on. Upgrade it: pip install 'fastapi>=0.100'."
    ) in flat
