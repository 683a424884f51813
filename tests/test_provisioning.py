"""Provisioning operations later features build on: copying a test database, and a lock
that holds across processes. Run in process against a real server or a real file, and
checked out of band.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from pytest_alchemy.errors import ProvisionError, SafetyError
from pytest_alchemy.provision import Provisioner, Record, provisioner_for
from pytest_alchemy.runs import RunIdentity

RECORD = Record(kind="run", state="in_use", owner=RunIdentity.current())


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Provisioner]:
    """A provisioner for the app database ``app_<test>`` on SQLite files or PostgreSQL."""
    if request.param == "sqlite":
        url = make_url(f"sqlite:///{tmp_path / 'app.db'}")
    else:
        pg_server: URL = request.getfixturevalue("pg_server")
        url = pg_server.set(database=f"app_{abs(hash(request.node.nodeid)) % 10**8}")
    provisioner = provisioner_for(url, "test_", lock_timeout=2)
    yield provisioner
    provisioner.close()


def rows(provisioner: Provisioner, name: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(provisioner.test_url(name), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            found = connection.exec_driver_sql("SELECT id, name FROM users ORDER BY id").all()
            return [tuple(row) for row in found]
    finally:
        engine.dispose()


def seed(provisioner: Provisioner, name: str) -> None:
    provisioner.create(name, RECORD)
    engine = sa.create_engine(provisioner.test_url(name), poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        connection.exec_driver_sql("INSERT INTO users VALUES (1, 'ada'), (2, 'grace')")
    engine.dispose()


def test_a_test_database_is_copied_with_its_rows(server: Provisioner) -> None:
    template, copy = "test_template", "test_copy"
    seed(server, template)
    try:
        server.clone(template, copy, RECORD)
        assert rows(server, copy) == [(1, "ada"), (2, "grace")]
        assert server.read_record(copy) == RECORD
        # A copy, not the same database: a change to it leaves the template alone.
        engine = sa.create_engine(server.test_url(copy), poolclass=sa.pool.NullPool)
        with engine.begin() as connection:
            connection.exec_driver_sql("DELETE FROM users")
        engine.dispose()
        assert rows(server, template) == [(1, "ada"), (2, "grace")]
    finally:
        server.drop(copy)
        server.drop(template)
    assert not server.exists(copy)


def test_copying_passes_the_guard_both_ways(server: Provisioner) -> None:
    with pytest.raises(SafetyError, match="refusing to clone the database"):
        server.clone("production", "test_copy", RECORD)
    with pytest.raises(SafetyError, match="refusing to create the database"):
        server.clone("test_template", "production", RECORD)
    assert not server.exists("test_copy")
    assert not server.exists("production")


@pytest.mark.postgresql
def test_a_template_in_use_is_waited_for_then_named(pg_server: URL) -> None:
    provisioner = provisioner_for(pg_server.set(database="app"), "test_", lock_timeout=1.5)
    seed(provisioner, "test_busy")
    engine = sa.create_engine(provisioner.test_url("test_busy"), poolclass=sa.pool.NullPool)
    try:
        # Held briefly: the copy waits for the session to leave, then succeeds.
        held = engine.connect()
        threading.Timer(0.5, held.close).start()
        started = time.monotonic()
        provisioner.clone("test_busy", "test_after_wait", RECORD)
        assert time.monotonic() - started >= 0.4
        assert rows(provisioner, "test_after_wait") == [(1, "ada"), (2, "grace")]
        # Held for longer than the lock timeout: one error naming the session.
        with engine.connect() as connection:
            connection.exec_driver_sql("SET application_name = 'a held session'")
            with pytest.raises(ProvisionError) as caught:
                provisioner.clone("test_busy", "test_never", RECORD)
        text = str(caught.value)
        assert "CREATE DATABASE copies test_busy" in text
        assert "(a held session)" in text
        assert not provisioner.exists("test_never")
    finally:
        engine.dispose()
        for name in ("test_busy", "test_after_wait", "test_never"):
            provisioner.drop(name)
        provisioner.close()


HOLDER = """
import sys, time
from sqlalchemy.engine import make_url
from pytest_alchemy.provision import provisioner_for

provisioner = provisioner_for(make_url(sys.argv[1]), "test_", lock_timeout=5)
with provisioner.exclusive("template build"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
provisioner.close()
"""


def test_the_lock_holds_across_processes_and_goes_with_its_holder(
    server: Provisioner, tmp_path: Path
) -> None:
    script = tmp_path / "holder.py"
    script.write_text(textwrap.dedent(HOLDER))
    url = server.url.render_as_string(hide_password=False)
    holder = subprocess.Popen(
        [sys.executable, str(script), url, "30"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        refused = pytest.raises(ProvisionError, match="held the lock 'template build'")
        with refused, server.exclusive("template build", timeout=0.3):
            pass
        # Another key is free meanwhile.
        with server.exclusive("something else", timeout=0.3):
            pass
        # The holder is killed mid-way: the lock goes with it.
        holder.kill()
        holder.wait(timeout=10)
        started = time.monotonic()
        with server.exclusive("template build", timeout=10):
            assert time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait(timeout=10)
        assert holder.stdout is not None
        holder.stdout.close()


def test_the_lock_is_waited_for_without_a_timeout(server: Provisioner) -> None:
    order: list[str] = []

    def second() -> None:
        with server.exclusive("build"):
            order.append("second")

    with server.exclusive("build"):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        order.append("first")
    thread.join(timeout=10)
    assert order == ["first", "second"]
