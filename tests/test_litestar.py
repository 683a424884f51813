"""Litestar with advanced-alchemy's SQLAlchemy plugin: the plugin's engine and sessions on
the test's connection, through ``httpx.AsyncClient`` on the test's loop (async config)
and ``TestClient`` (sync config). Litestar's ``AsyncTestClient`` serves the app from a
loop of its own thread, which an async test's connection cannot follow: the loop guard
says so.

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
from litestar import Litestar, get, post
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from models import User

async_config = SQLAlchemyAsyncConfig(
    connection_string=ASYNC_NOWHERE, before_send_handler="autocommit", create_all=False
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


@post("/sync/users/{name:str}", sync_to_thread=False)
def add_user_sync(name: str, sync_session: Session) -> dict:
    sync_session.add(User(name=name))
    sync_session.flush()
    return {"users": sync_session.scalar(select(func.count()).select_from(User))}


async_app = Litestar(
    route_handlers=[add_user, count_users],
    plugins=[SQLAlchemyPlugin(config=async_config)],
    debug=True,
)
sync_app = Litestar(route_handlers=[add_user_sync], plugins=[SQLAlchemyPlugin(config=sync_config)])
"""

TESTS = """
from contextlib import asynccontextmanager

import httpx
import pytest
from litestar.testing import AsyncTestClient, TestClient
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
async def test_async_test_client_runs_the_app_on_another_loop(alchemy_async_session):
    # Litestar's AsyncTestClient serves the app from a thread of its own: the test's
    # async connection cannot follow it there, and the error says so.
    async with AsyncTestClient(app=myapp.async_app) as client:
        response = await client.get("/users")
    assert response.status_code == 500
    assert "but was used from a different event loop" in response.text


@pytest.mark.asyncio
async def test_the_next_test_starts_clean(alchemy_async_session):
    async with client_of(myapp.async_app) as client:
        assert (await client.get("/users")).json() == {"users": 0}


def test_a_sync_config_through_the_test_client(alchemy_session):
    with TestClient(app=myapp.sync_app) as client:
        assert client.post("/sync/users/grace").json() == {"users": 1}
    assert alchemy_session.scalar(COUNT) == 1


def test_put_back():
    engine = myapp.async_config.engine_instance
    assert engine is None or "connect" not in vars(engine.sync_engine)
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
    project.run("-p", "no:randomly").assert_outcomes(passed=5)
    assert project.sql("SELECT count(*) FROM users") == [(0,)]
    assert not (project.path / "missing").exists()
