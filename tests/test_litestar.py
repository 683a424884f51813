"""Litestar with advanced-alchemy's SQLAlchemy plugin: the plugin's engine and sessions on
the test's connection, through Litestar's ``AsyncTestClient`` and ``httpx.AsyncClient``
(async config) and ``TestClient`` (sync config). In an async test, ``AsyncTestClient``
serves the app (lifespan included) on the test's own loop, where its connection is; a
client entered before the test keeps its thread.

The plugin's configs point at a database nothing can reach: a passing request went
through the test's connection. What the tests committed is checked out of band.
"""

from __future__ import annotations

from .helpers import Project

APP = """
from advanced_alchemy.extensions.litestar import (
    SQLAlchemyAsyncConfig,
    SQLAlchemyPlugin,
    SQLAlchemySyncConfig,
)
import asyncio

from litestar import Litestar, Request, get, post, websocket_listener
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from models import User

async_config = SQLAlchemyAsyncConfig(
    connection_string=ASYNC_NOWHERE, before_send_handler="autocommit", create_all=True
)
sync_config = SQLAlchemySyncConfig(
    connection_string=SYNC_NOWHERE,
    before_send_handler="autocommit",
    session_dependency_key="sync_session",
    engine_dependency_key="sync_engine",
    engine_app_state_key="sync_engine",
    session_maker_app_state_key="sync_session_maker",
    session_scope_key="_sync_session",
)


@post("/users/{name:str}")
async def add_user(name: str, db_session: AsyncSession) -> dict:
    db_session.add(User(name=name))
    await db_session.flush()
    return {"users": await db_session.scalar(select(func.count()).select_from(User))}


@get("/users")
async def count_users(db_session: AsyncSession) -> dict:
    return {"users": await db_session.scalar(select(func.count()).select_from(User))}


@get("/loop")
async def which_loop(request: Request) -> dict:
    return {
        "request": id(asyncio.get_running_loop()),
        "startup": request.app.state.get("startup_loop"),
    }


@get("/boom")
async def boom() -> None:
    raise RuntimeError("the route failed")


@websocket_listener("/echo")
async def echo(data: str) -> str:
    return data


def remember_the_loop(app: Litestar) -> None:
    app.state.startup_loop = id(asyncio.get_running_loop())


def refuse_to_start() -> None:
    raise RuntimeError("no configuration")


@post("/sync/users/{name:str}", sync_to_thread=False)
def add_user_sync(name: str, sync_session: Session) -> dict:
    sync_session.add(User(name=name))
    sync_session.flush()
    return {"users": sync_session.scalar(select(func.count()).select_from(User))}


async_app = Litestar(
    route_handlers=[add_user, count_users, which_loop, boom, echo],
    plugins=[SQLAlchemyPlugin(config=async_config)],
    on_startup=[remember_the_loop],
)
failing_app = Litestar(route_handlers=[which_loop], on_startup=[refuse_to_start])
loop_app = Litestar(route_handlers=[which_loop], on_startup=[remember_the_loop])


async def raw_app(scope, receive, send):
    # A bare ASGI app: its errors reach the client, it may not answer at all.
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["path"] == "/fail":
        raise RuntimeError("the app failed")


async def stubborn_app(scope, receive, send):
    # Says its start-up failed, then never returns.
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "not today"})
    await asyncio.Event().wait()
sync_app = Litestar(route_handlers=[add_user_sync], plugins=[SQLAlchemyPlugin(config=sync_config)])
"""

TESTS = """
from contextlib import asynccontextmanager

import asyncio

import httpx
import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient, TestClient
from litestar.testing.transport import TestClientTransport
from sqlalchemy import func, select

import app as myapp
from models import User

COUNT = select(func.count()).select_from(User)


@asynccontextmanager
async def client_of(app):
    # On the test's own loop: the app's lifespan, then requests through ASGITransport.
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@pytest.mark.asyncio
async def test_the_plugins_session_is_the_tests(alchemy_async_session):
    async with client_of(myapp.async_app) as client:
        response = await client.post("/users/ada")
        assert response.json() == {"users": 1}
    # Committed by the plugin's before_send handler: inside the test's transaction.
    assert await alchemy_async_session.scalar(COUNT) == 1


@pytest.mark.asyncio
async def test_async_test_client_serves_the_app_on_the_tests_loop(alchemy_async_session):
    async with AsyncTestClient(app=myapp.async_app) as client:
        assert (await client.post("/users/grace")).json() == {"users": 1}
        loops = (await client.get("/loop")).json()
    here = id(asyncio.get_running_loop())
    assert loops == {"request": here, "startup": here}
    assert await alchemy_async_session.scalar(COUNT) == 1


@pytest.mark.asyncio
async def test_server_errors_as_litestar_gives_them(alchemy_async_session):
    async with AsyncTestClient(app=myapp.async_app) as client:
        assert (await client.get("/boom")).status_code == 500
    async with AsyncTestClient(app=myapp.raw_app, raise_server_exceptions=False) as client:
        assert (await client.get("/fail")).status_code == 500
        assert (await client.get("/silent")).status_code == 500
    async with AsyncTestClient(app=myapp.raw_app) as client:
        with pytest.raises(RuntimeError, match="the app failed"):
            await client.get("/fail")
        with pytest.raises(AssertionError, match="did not receive any response"):
            await client.get("/silent")


@pytest.mark.asyncio
async def test_a_failing_lifespan_is_said(alchemy_async_session):
    with pytest.raises(Exception, match="lifespan startup failed") as raised:
        async with AsyncTestClient(app=myapp.failing_app):
            pass
    assert "no configuration" in str(raised.value) + repr(raised.value.__cause__)
    with pytest.raises(Exception, match="lifespan startup failed: not today"):
        async with AsyncTestClient(app=myapp.stubborn_app):
            pass


@pytest.mark.asyncio
async def test_websockets_still_work(alchemy_async_session):
    async with AsyncTestClient(app=myapp.async_app) as client:
        with await client.websocket_connect("/echo") as socket:
            socket.send_text("hello")
            assert socket.receive_text() == "hello"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def early_client():
    async with AsyncTestClient(app=myapp.loop_app) as client:
        yield client


@pytest.mark.asyncio(loop_scope="module")
async def test_a_client_entered_before_the_test_keeps_its_thread(
    early_client, alchemy_async_session
):
    loops = (await early_client.get("/loop")).json()
    assert loops["request"] == loops["startup"] != id(asyncio.get_running_loop())


@pytest.mark.asyncio
async def test_the_next_test_starts_clean(alchemy_async_session):
    async with client_of(myapp.async_app) as client:
        assert (await client.get("/users")).json() == {"users": 0}
    async with AsyncTestClient(app=myapp.async_app) as client:
        assert (await client.get("/users")).json() == {"users": 0}


def test_a_sync_config_through_the_test_client(alchemy_session):
    with TestClient(app=myapp.sync_app) as client:
        assert client.post("/sync/users/grace").json() == {"users": 1}
    assert alchemy_session.scalar(COUNT) == 1


def test_put_back():
    engine = myapp.async_config.engine_instance
    assert engine is None or "connect" not in vars(engine.sync_engine)
    assert AsyncTestClient.__aenter__.__module__ == "litestar.testing.client.async_client"
    assert "__aexit__" in vars(AsyncTestClient)
    assert TestClientTransport.handle_async_request.__module__ == "litestar.testing.transport"
"""


def test_litestar_with_advanced_alchemy(project: Project) -> None:
    if project.backend == "sqlite":
        sync = f"sqlite:///{project.path / 'missing' / 'app.db'}"
        async_ = sync.replace("sqlite://", "sqlite+aiosqlite://")
    else:
        sync = "postgresql+psycopg://app@db.invalid/app"
        async_ = "postgresql+asyncpg://app@db.invalid/app"
    project.write(
        "app.py", APP.replace("ASYNC_NOWHERE", repr(async_)).replace("SYNC_NOWHERE", repr(sync))
    )
    project.ini("alchemy_app_sessions = app:async_config app:sync_config\nalchemy_keep_db = true")
    project.tests(TESTS)
    project.run("-p", "no:randomly").assert_outcomes(passed=9)
    assert project.sql("SELECT count(*) FROM users") == [(0,)]
    assert not (project.path / "missing").exists()
