"""Throwaway PostgreSQL servers: started from the installed binaries, stopped and deleted after.

These tests start real servers (one to two seconds each), so they need the
PostgreSQL server programs; they are skipped when those are not installed.
Server roots live directly under /tmp because unix socket paths must stay short.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from pytest_alchemy import errors, servers
from pytest_alchemy.runs import RunIdentity

try:
    BINARIES = servers.find_postgresql_binaries()
except errors.ServerError:  # pragma: no cover - depends on the machine
    pytestmark = pytest.mark.skip(reason="the PostgreSQL server programs are not installed")


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # pragma: no cover - systems without /proc
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat[stat.rindex(")") + 2] not in "ZX"


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if stat[stat.rindex(")") + 2 :].split()[1] == str(pid):
                found.append(int(entry.name))
    return found


def _wait_not_running(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while _running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _scalar(url: URL, sql: str) -> object:
    engine = sa.create_engine(url.set(drivername="postgresql+psycopg"), poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(sql)).scalar()
    finally:
        engine.dispose()


def _child_environment() -> dict[str, str]:
    """The environment for a child interpreter that must import this package."""
    source = str(Path(servers.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": source + (os.pathsep + path if path else "")}


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="pa-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[servers.ThrowawayServer]:
    started = servers.start_server("postgresql", root=root)
    yield started
    started.stop()


# --- a running server ------------------------------------------------------------------------


def test_the_url_reaches_the_maintenance_database_over_the_socket(
    server: servers.ThrowawayServer,
) -> None:
    url = server.url
    assert (url.drivername, url.username, url.database) == ("postgresql", "postgres", "postgres")
    assert url.host is None
    assert url.query["host"] == str(server.directory)
    assert _scalar(url, "select 1") == 1
    assert _scalar(url, "show unix_socket_directories") == str(server.directory)


def test_no_tcp_is_opened_unless_asked(server: servers.ThrowawayServer) -> None:
    assert isinstance(server, servers.PostgreSQLServer)
    assert server.port is None
    assert _scalar(server.url, "show listen_addresses") == ""


def test_durability_is_traded_for_speed(server: servers.ThrowawayServer) -> None:
    assert _scalar(server.url, "show fsync") == "off"
    assert _scalar(server.url, "show synchronous_commit") == "off"
    assert _scalar(server.url, "show full_page_writes") == "off"
    assert _scalar(server.url, "show max_connections") == "200"


def test_version_is_the_running_servers(server: servers.ThrowawayServer) -> None:
    assert server.version.split(".")[0].isdigit()
    reported = _scalar(server.url, "show server_version")
    assert isinstance(reported, str)
    assert reported.startswith(server.version)


def test_layout_and_owner_record(root: Path, server: servers.ThrowawayServer) -> None:
    directory = server.directory
    assert directory.parent == root.resolve()
    assert directory.name.startswith(f"pg-{os.getpid()}-")
    assert (directory / "data" / "PG_VERSION").is_file()
    assert (directory / "server.log").is_file()
    record = json.loads((directory / "owner.json").read_text())
    assert record["kind"] == "postgresql"
    assert record["server_pid"] == server.pid
    owner = RunIdentity.from_dict(record["owner"])
    assert owner is not None
    assert owner.is_me()


def test_runs_as_an_unprivileged_user(server: servers.ThrowawayServer) -> None:
    expected = pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else os.geteuid()
    assert server.directory.stat().st_uid == expected
    assert Path(f"/proc/{server.pid}").stat().st_uid == expected


# --- starting and stopping -------------------------------------------------------------------


def test_tcp_on_a_free_port_and_stop_as_a_context_manager(root: Path) -> None:
    with servers.PostgreSQLServer(root=root, port=0) as server:
        port = server.port
        assert isinstance(port, int)
        assert port > 0
        assert server.url.query["port"] == str(port)
        tcp = URL.create("postgresql", username="postgres", host="127.0.0.1", port=port)
        assert _scalar(tcp.set(database="postgres"), "show listen_addresses") == "127.0.0.1"
        assert _scalar(tcp.set(database="postgres"), "select inet_server_port()") == port
        directory, pid = server.directory, server.pid
        assert _running(pid)
    assert not directory.exists()
    assert _wait_not_running(pid)
    server.stop()  # a second stop does nothing
    assert not server.running
    with pytest.raises(errors.ServerError, match="has been stopped"):
        _ = server.url


def test_stop_kills_a_server_that_will_not_shut_down(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = servers.start_server("postgresql", root=root)
    directory, pid = server.directory, server.pid
    children = _children(pid)
    assert children  # checkpointer, background writer, ...

    def refuse(run_as: object) -> None:
        raise errors.ServerError("pg_ctl stop failed")

    monkeypatch.setattr(server, "_shutdown", refuse)
    server.stop()
    assert _wait_not_running(pid)
    assert all(_wait_not_running(child, timeout=2.0) for child in children)
    assert not directory.exists()


def test_a_server_does_not_outlive_an_interrupted_interpreter(root: Path) -> None:
    script = textwrap.dedent(
        f"""
        import json, time
        from pathlib import Path
        from pytest_alchemy import servers

        server = servers.start_server("postgresql", root=Path({str(root)!r}))
        print(json.dumps([str(server.directory), server.pid]), flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_environment(),
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line, child.communicate(timeout=30)[1]
    directory, pid = json.loads(line)
    assert _running(pid)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=30)
    assert "KeyboardInterrupt" in stderr
    assert _wait_not_running(pid)
    assert not Path(directory).exists()


def test_a_failed_start_reports_the_servers_log_and_leaves_nothing(root: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        before = set(root.iterdir())
        with pytest.raises(errors.ServerError) as caught:
            servers.start_server("postgresql", root=root, port=port)
    text = str(caught.value)
    assert "did not start" in text
    assert f"Port {port} is taken" in text
    assert "could not bind IPv4 address" in text  # from the server's log
    assert set(root.iterdir()) == before


def test_a_root_too_long_for_a_socket_is_refused() -> None:
    parent = Path(tempfile.mkdtemp(prefix="pa-", dir="/tmp"))
    try:
        with pytest.raises(errors.ServerError, match="too long"):
            servers.start_server("postgresql", root=parent / ("x" * 90))
        assert list(parent.iterdir()) == []
    finally:
        shutil.rmtree(parent)


def test_missing_binaries_say_what_to_do(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = Path(tempfile.mkdtemp(prefix="pa-empty-", dir="/tmp"))
    try:
        monkeypatch.setenv("PATH", str(empty))
        before = set(root.iterdir())
        with pytest.raises(errors.ServerError) as caught:
            servers.PostgreSQLServer(root=root, search_dirs=[empty]).start()
        text = str(caught.value)
        assert text.startswith(errors.PREFIX)
        for expected in ("initdb", "pg_ctl", "postgres", str(empty), "PATH", "pg_config"):
            assert expected in text
        assert "apt-get install postgresql" in text
        assert "alchemy_url" in text
        assert "alchemy_server" in text
        assert set(root.iterdir()) == before
        # The same search finds a directory that has them.
        found = servers.find_postgresql_binaries(search_dirs=[empty, BINARIES.bindir])
        assert found.bindir == BINARIES.bindir
    finally:
        shutil.rmtree(empty)


def test_an_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(errors.ServerError, match="'oracle'") as caught:
        servers.start_server("oracle")
    assert "postgresql" in str(caught.value)
    assert set(servers.SERVERS) == {"postgresql"}


# --- orphans ---------------------------------------------------------------------------------


def test_reaping_stops_the_server_of_a_killed_run_and_spares_live_ones(
    root: Path, server: servers.ThrowawayServer
) -> None:
    script = textwrap.dedent(
        f"""
        import json, os, signal
        from pathlib import Path
        from pytest_alchemy import servers

        server = servers.start_server("postgresql", root=Path({str(root)!r}))
        print(json.dumps([str(server.directory), server.pid]), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=_child_environment(),
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    directory, pid = json.loads(child.stdout)
    orphan = Path(directory)
    assert _running(pid)  # the killed run could not stop its server
    assert orphan.is_dir()

    assert servers.reap_orphans(root) == [orphan]

    assert _wait_not_running(pid)
    assert not orphan.exists()
    assert server.directory.is_dir()
    assert _scalar(server.url, "select 1") == 1
    assert servers.reap_orphans(root) == []


def test_reaping_never_signals_a_process_that_reused_the_pid(root: Path) -> None:
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        directory = root / "pg-999999-abcdef"
        (directory / "data").mkdir(parents=True)
        (directory / "data" / "postmaster.pid").write_text(f"{bystander.pid}\n{directory}/data\n")
        # This very process, but started at another time: a dead run whose pid was reused.
        dead = dataclasses.replace(RunIdentity.current(), started="1")
        record = {"kind": "postgresql", "owner": dead.to_dict(), "server_pid": bystander.pid}
        (directory / "owner.json").write_text(json.dumps(record))

        assert servers.reap_orphans(root) == [directory]

        assert not directory.exists()
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_reaping_a_directory_without_an_owner_waits_for_it_to_be_old(root: Path) -> None:
    fresh = root / "pg-999998-abcdef"
    old = root / "pg-999997-abcdef"
    unrelated = root / "something-else"
    for directory in (fresh, old, unrelated):
        directory.mkdir()
    long_ago = time.time() - servers.ORPHAN_GRACE - 60
    os.utime(old, (long_ago, long_ago))
    os.utime(unrelated, (long_ago, long_ago))
    try:
        assert servers.reap_orphans(root) == [old]
        assert fresh.is_dir()
        assert unrelated.is_dir()
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
        shutil.rmtree(unrelated, ignore_errors=True)


# --- misuse of a server object -----------------------------------------------------------


def test_an_unstarted_server_says_so(root: Path) -> None:
    server = servers.PostgreSQLServer(root=root)
    assert not server.running
    assert "not started" in repr(server)
    for attribute in ("directory", "pid"):
        with pytest.raises(errors.ServerError, match="has not been started"):
            getattr(server, attribute)


def test_a_server_starts_once(server: servers.ThrowawayServer) -> None:
    assert "running" in repr(server)
    with pytest.raises(errors.ServerError, match="already started; create a new one"):
        server.start()


@pytest.mark.parametrize("port", [-1, 65536])
def test_a_port_out_of_range_is_refused(root: Path, port: int) -> None:
    with pytest.raises(errors.ServerError, match=f"port {port} is not a TCP port"):
        servers.PostgreSQLServer(root=root, port=port)


def test_process_helpers_on_processes_that_are_gone(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not servers._process_running(child.pid)
    assert servers._command_line(child.pid) is None
    assert servers._wait_gone(child.pid, 0.1)
    assert servers._tail(tmp_path / "missing.log") == ""
    assert servers._command_line(os.getpid()) is not None
