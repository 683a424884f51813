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
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

import pytest_alchemy
from pytest_alchemy import errors, processes, servers
from pytest_alchemy.runs import RunIdentity

from .helpers import server_scalar, wait_stopped

# Every test here needs the PostgreSQL server programs (the whole module skips without).
pytestmark = [pytest.mark.postgresql]
try:
    BINARIES = servers.find_postgresql_binaries()
except errors.ServerError:  # pragma: no cover - depends on the machine
    pytestmark.append(pytest.mark.skip(reason="the PostgreSQL server programs are not installed"))


def _child_environment() -> dict[str, str]:
    """The environment for a child interpreter that must import this package."""
    source = str(Path(pytest_alchemy.__file__).resolve().parents[1])
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
    assert server_scalar(url, "select 1") == 1
    assert server_scalar(url, "show unix_socket_directories") == str(server.directory)


def test_no_tcp_is_opened_unless_asked(server: servers.ThrowawayServer) -> None:
    assert isinstance(server, servers.PostgreSQLServer)
    assert server.port is None
    assert server_scalar(server.url, "show listen_addresses") == ""


def test_durability_is_traded_for_speed(server: servers.ThrowawayServer) -> None:
    assert server_scalar(server.url, "show fsync") == "off"
    assert server_scalar(server.url, "show synchronous_commit") == "off"
    assert server_scalar(server.url, "show full_page_writes") == "off"
    assert server_scalar(server.url, "show max_connections") == "200"


def test_version_is_the_running_servers(server: servers.ThrowawayServer) -> None:
    assert server.version.split(".")[0].isdigit()
    reported = server_scalar(server.url, "show server_version")
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
        assert server_scalar(tcp.set(database="postgres"), "show listen_addresses") == "127.0.0.1"
        assert server_scalar(tcp.set(database="postgres"), "select inet_server_port()") == port
        directory, pid = server.directory, server.pid
        assert processes.running(pid)
    assert not directory.exists()
    assert wait_stopped(pid)
    server.stop()  # a second stop does nothing
    assert not server.running
    with pytest.raises(errors.ServerError, match="has been stopped"):
        _ = server.url


def test_stop_kills_a_server_that_will_not_shut_down(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = servers.start_server("postgresql", root=root)
    directory, pid = server.directory, server.pid
    children = processes.child_pids(pid)
    assert children  # checkpointer, background writer, ...

    def refuse(run_as: object) -> None:
        raise errors.ServerError("pg_ctl stop failed")

    monkeypatch.setattr(server, "_shutdown", refuse)
    server.stop()
    assert wait_stopped(pid)
    assert all(wait_stopped(child, timeout=2.0) for child in children)
    assert not directory.exists()


def test_a_server_does_not_outlive_an_interrupted_interpreter(root: Path) -> None:
    script = textwrap.dedent(
        f"""
        import json, os, sys, time
        from pathlib import Path
        from pytest_alchemy import servers

        server = servers.start_server("postgresql", root=Path({str(root)!r}))
        # A forked child inherits the exit handler but not the server: its exit stops nothing.
        child = os.fork()
        if child == 0:
            sys.exit(0)
        os.waitpid(child, 0)
        assert server.running and server.directory.is_dir()
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
    assert processes.running(pid)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=30)
    assert "KeyboardInterrupt" in stderr
    assert wait_stopped(pid)
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
    assert processes.running(pid)  # the killed run could not stop its server
    assert orphan.is_dir()

    assert servers.reap_orphans(root) == [orphan]

    assert wait_stopped(pid)
    assert not orphan.exists()
    assert server.directory.is_dir()
    assert server_scalar(server.url, "select 1") == 1
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


def test_reaping_spares_other_machines_and_skips_what_is_not_a_server(root: Path) -> None:
    """A directory shared with another machine holds servers this one cannot see running."""
    here = RunIdentity.current()
    rebooted = root / "pg-999996-abcdef"
    other_host = root / "pg-999995-abcdef"
    unknown_kind = root / "xy-999994-abcdef"
    not_a_directory = root / "pg-999993-abcdef"
    link = root / "pg-999992-abcdef"
    owners = {
        rebooted: dataclasses.replace(here, boot_id="an-earlier-boot"),
        other_host: dataclasses.replace(here, host=here.host + "-elsewhere"),
        unknown_kind: dataclasses.replace(here, started="1"),
    }
    for directory, owner in owners.items():
        directory.mkdir()
        record = {"kind": "unknown", "owner": owner.to_dict(), "server_pid": None}
        (directory / "owner.json").write_text(json.dumps(record))
    not_a_directory.write_text("")
    link.symlink_to(rebooted)
    try:
        assert servers.reap_orphans(root) == [rebooted]
        assert other_host.is_dir()
        assert unknown_kind.is_dir()
        assert not_a_directory.is_file()
        assert not link.exists()  # its target was reaped; the link itself is left
        assert link.is_symlink()
    finally:
        for path in (other_host, unknown_kind):
            shutil.rmtree(path, ignore_errors=True)
        not_a_directory.unlink()
        link.unlink()


def test_reaping_a_root_that_does_not_exist_reaps_nothing(root: Path) -> None:
    assert servers.reap_orphans(root / "missing") == []
    assert not (root / "missing").exists()


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


# --- a broken installation -------------------------------------------------------------------

BAD_INTERPRETER = "#!/nonexistent/interpreter\n"
"""A program the system cannot run: its interpreter does not exist."""


@pytest.fixture
def fake_bin(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Path]]:
    """Make a bin directory first on PATH whose programs stand in for the real ones.

    ``make(initdb=..., pg_ctl=...)`` writes each named program as the given shell
    script (a text starting with ``#!`` as it is); the others run the real program.
    The directory is readable by the server's user when the tests run as root.
    """
    made: list[Path] = []

    def make(**scripts: str) -> Path:
        bindir = Path(tempfile.mkdtemp(prefix="pa-bin-", dir="/tmp"))
        made.append(bindir)
        bindir.chmod(0o755)
        for name in sorted({"initdb", "pg_ctl", "postgres", *scripts}):
            real = getattr(BINARIES, name, None)
            body = scripts.get(name, f'exec {real} "$@"')
            text = body if body.startswith("#!") else "#!/bin/sh\n" + textwrap.dedent(body)
            program = bindir / name
            program.write_text(text.replace("REAL", str(real)))
            program.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
        return bindir

    yield make
    for bindir in made:
        shutil.rmtree(bindir, ignore_errors=True)


INITDB_FAILS = """
if [ "$1" = "--help" ]; then exec REAL --help; fi
echo "initdb: error: could not create directory: No space left on device" >&2
exit 1
"""


def test_a_failing_initdb_is_reported_with_its_output_and_leaves_nothing(
    root: Path, fake_bin: Callable[..., Path]
) -> None:
    fake_bin(initdb=INITDB_FAILS)
    before = set(root.iterdir())
    with pytest.raises(errors.ServerError) as caught:
        servers.start_server("postgresql", root=root)
    text = str(caught.value)
    assert text.startswith(errors.PREFIX)
    assert "initdb failed (exit status 1)" in text
    assert "No space left on device" in text
    assert "point `alchemy_url` at a running server" in text
    assert set(root.iterdir()) == before


@pytest.mark.parametrize(
    ("usage", "expected", "absent"),
    [
        ("  --nosync   do not wait for changes to be written safely to disk", "--nosync", []),
        ("  -D, --pgdata=DATADIR", None, ["--nosync", "--no-sync", "--no-instructions"]),
    ],
    ids=["old-spelling", "no-options"],
)
def test_initdb_gets_only_the_options_its_version_knows(
    root: Path,
    fake_bin: Callable[..., Path],
    usage: str,
    expected: str | None,
    absent: list[str],
) -> None:
    """Older initdb programs spell the sync option differently or have none of the options."""
    fake_bin(
        initdb=f"""
        if [ "$1" = "--help" ]; then echo "{usage}"; exit 0; fi
        echo "called with: $*" >&2
        exit 3
        """
    )
    with pytest.raises(errors.ServerError, match=r"initdb failed \(exit status 3\)") as caught:
        servers.start_server("postgresql", root=root)
    called = next(line for line in str(caught.value).splitlines() if "called with:" in line)
    arguments = called.split()
    assert "--auth=trust" in arguments
    if expected is not None:
        assert expected in arguments
    for option in absent:
        assert option not in arguments


def test_an_initdb_that_hangs_is_stopped_after_the_timeout(
    root: Path, fake_bin: Callable[..., Path]
) -> None:
    fake_bin(
        initdb="""
        if [ "$1" = "--help" ]; then exec REAL --help; fi
        exec /bin/sleep 60
        """
    )
    before = set(root.iterdir())
    started = time.monotonic()
    with pytest.raises(errors.ServerError) as caught:
        servers.PostgreSQLServer(root=root, timeout=1).start()
    assert time.monotonic() - started < 30
    text = str(caught.value)
    assert "initdb did not finish within 1 seconds" in text
    assert "raise the server timeout" in text
    assert set(root.iterdir()) == before


def test_a_server_program_that_cannot_run_says_to_check_the_install(
    root: Path, fake_bin: Callable[..., Path]
) -> None:
    fake_bin(initdb=BAD_INTERPRETER)
    before = set(root.iterdir())
    with pytest.raises(errors.ServerError) as caught:
        servers.start_server("postgresql", root=root)
    text = str(caught.value)
    assert "initdb --help could not be run" in text
    assert "Check the PostgreSQL install" in text
    assert set(root.iterdir()) == before


def test_a_postgres_that_cannot_report_its_version_fails_before_anything_is_created(
    root: Path, fake_bin: Callable[..., Path]
) -> None:
    bindir = fake_bin(postgres=BAD_INTERPRETER)
    fresh = root / "never-created"
    with pytest.raises(errors.ServerError) as caught:
        servers.start_server("postgresql", root=fresh)
    text = str(caught.value)
    assert f"`{bindir / 'postgres'} --version` failed" in text
    assert "Check the PostgreSQL install" in text
    assert not fresh.exists()


@pytest.mark.parametrize(
    ("output", "version"),
    [
        ("postgres (PostgreSQL) 17devel", "17"),
        ("postgres (PostgreSQL) 16.4 (Debian 16.4-1.pgdg120+1)", "16.4"),
        ("PostgreSQL 9.6.24", "9.6.24"),
        ("a custom build", "a custom build"),
    ],
)
def test_the_version_is_read_from_what_postgres_prints(
    fake_bin: Callable[..., Path], output: str, version: str
) -> None:
    fake_bin(postgres=f'echo "{output}"')
    assert servers.PostgreSQLServer().version == version


@pytest.mark.parametrize(
    ("pg_ctl", "said"),
    [
        ('echo "pg_ctl: could not start server" >&2\nexit 1', "pg_ctl: could not start server"),
        ("exit 0", "(nothing was logged)"),
    ],
    ids=["fails", "starts-nothing"],
)
def test_a_pg_ctl_that_starts_no_server_is_reported_and_leaves_nothing(
    root: Path, fake_bin: Callable[..., Path], pg_ctl: str, said: str
) -> None:
    fake_bin(pg_ctl=f'if [ "$1" != "start" ]; then exec REAL "$@"; fi\n{pg_ctl}\n')
    before = set(root.iterdir())
    with pytest.raises(errors.ServerError) as caught:
        servers.start_server("postgresql", root=root)
    text = str(caught.value)
    assert "the throwaway PostgreSQL server did not start (pg_ctl exit status" in text
    assert said in text
    assert "Port" not in text
    assert set(root.iterdir()) == before


FLAKY_PG_CTL = """
if [ "$1" = "start" ] && [ ! -e lost-the-race ]; then
    touch lost-the-race
    echo 'LOG:  could not bind IPv4 address "127.0.0.1": Address already in use' > server.log
    exit 1
fi
if [ "$1" = "stop" ]; then
    echo "pg_ctl: could not send stop signal" >&2
    exit 1
fi
exec REAL "$@"
"""


def test_a_lost_race_for_a_free_port_is_retried_and_a_refused_stop_ends_in_a_kill(
    root: Path, fake_bin: Callable[..., Path]
) -> None:
    """Another process may take the free port before the server binds it; pg_ctl stop may fail."""
    fake_bin(pg_ctl=FLAKY_PG_CTL)
    # A server already started may be used as a context manager too: it is stopped at the end.
    with servers.PostgreSQLServer(root=root, port=0).start() as server:
        assert (server.directory / "lost-the-race").exists()
        port = server.port
        assert isinstance(port, int)
        tcp = URL.create("postgresql", username="postgres", host="127.0.0.1", port=port)
        assert server_scalar(tcp.set(database="postgres"), "select 1") == 1
        directory, pid = server.directory, server.pid
    assert wait_stopped(pid)
    assert not directory.exists()


# --- users and the server root ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "said"),
    [
        ("pa-no-such-user", "there is no 'pa-no-such-user' user to run it as instead"),
        ("root", "the 'root' user is root"),
    ],
)
def test_running_as_root_needs_an_unprivileged_service_user(
    root: Path, user: str, said: str
) -> None:
    class Server(servers.PostgreSQLServer):
        service_user = user

    fresh = root / f"for-{user}"
    if os.geteuid() != 0:
        # Not root: the server runs as the current user, whatever the service user.
        assert Server._run_as().uid == os.geteuid()
        return
    with pytest.raises(errors.ServerError) as caught:
        Server(root=fresh).start()
    text = str(caught.value)
    assert said in text
    assert "run the tests as a user other than root" in text
    assert not fresh.exists()


def test_a_root_that_cannot_be_created_says_so(root: Path) -> None:
    blocker = root / "a-file"
    blocker.write_text("")
    try:
        with pytest.raises(errors.ServerError) as caught:
            servers.start_server("postgresql", root=blocker / "servers")
        text = str(caught.value)
        assert f"cannot create the directory {blocker / 'servers'} for throwaway servers" in text
        assert "Pass a writable root, or set TMPDIR" in text
    finally:
        blocker.unlink()


def test_a_root_owned_by_someone_else_is_refused(root: Path) -> None:
    if os.geteuid() == 0:
        foreign = root / "foreign"
        foreign.mkdir()
        os.chown(foreign, pwd.getpwnam("postgres").pw_uid, -1)
    else:
        foreign = Path("/")
    try:
        with pytest.raises(errors.ServerError) as caught:
            servers.start_server("postgresql", root=foreign)
        text = str(caught.value)
        assert f"{foreign} is not a directory owned by the current user" in text
        assert "Delete it, or pass another root" in text
        assert not [path for path in foreign.iterdir() if path.name.startswith("pg-")]
    finally:
        if foreign != Path("/"):
            shutil.rmtree(foreign)


def test_a_planted_symlink_as_the_default_root_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Someone who controls the temporary directory must not choose where servers live."""
    temporary = Path(tempfile.mkdtemp(prefix="pa-tmp-", dir="/tmp"))
    elsewhere = Path(tempfile.mkdtemp(prefix="pa-elsewhere-", dir="/tmp"))
    try:
        monkeypatch.setattr(tempfile, "tempdir", str(temporary))
        planted = temporary / f"pytest-alchemy-{os.getuid()}"
        planted.symlink_to(elsewhere)
        assert servers.default_root() == planted
        with pytest.raises(errors.ServerError, match="is not a directory owned by the current"):
            servers.start_server("postgresql")
        assert list(elsewhere.iterdir()) == []
    finally:
        shutil.rmtree(temporary)
        shutil.rmtree(elsewhere)


def test_a_temporary_directory_too_long_for_sockets_puts_the_default_root_in_tmp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", "/tmp/" + "t" * 80)
    assert servers.default_root() == Path("/tmp") / f"pytest-alchemy-{os.getuid()}"
    monkeypatch.setattr(tempfile, "tempdir", "/var/tmp")
    assert servers.default_root() == Path("/var/tmp") / f"pytest-alchemy-{os.getuid()}"


def test_a_short_root_that_resolves_to_a_long_path_is_refused(root: Path) -> None:
    long = root / ("l" * 70)
    long.mkdir()
    short = root / "short"
    short.symlink_to(long)
    try:
        with pytest.raises(errors.ServerError, match="is too long: unix socket paths"):
            servers.start_server("postgresql", root=short)
        assert list(long.iterdir()) == []
    finally:
        short.unlink()
        long.rmdir()


def test_a_root_others_may_write_to_is_tightened(fake_bin: Callable[..., Path]) -> None:
    fake_bin(initdb=INITDB_FAILS)
    loose = Path(tempfile.mkdtemp(prefix="pa-loose-", dir="/tmp"))
    loose.chmod(0o777)
    try:
        with pytest.raises(errors.ServerError, match="initdb failed"):
            servers.start_server("postgresql", root=loose)
        assert stat.S_IMODE(loose.stat().st_mode) == 0o755
    finally:
        shutil.rmtree(loose)


@pytest.mark.parametrize(
    ("owner", "mode", "enterable"),
    [("postgres", 0o700, True), ("group", 0o710, True), ("root", 0o700, False)],
)
def test_a_root_the_server_user_cannot_enter_is_refused_before_anything_runs(
    fake_bin: Callable[..., Path], owner: str, mode: int, enterable: bool
) -> None:
    """As root the server runs as ``postgres``: every directory above its own must let it in."""
    fake_bin(initdb=INITDB_FAILS)
    parent = Path(tempfile.mkdtemp(prefix=f"pa-{owner}-", dir="/tmp"))
    if os.geteuid() == 0:
        service = pwd.getpwnam("postgres")
        if owner == "postgres":
            os.chown(parent, service.pw_uid, -1)
        elif owner == "group":
            os.chown(parent, 0, service.pw_gid)
    parent.chmod(mode)
    try:
        with pytest.raises(errors.ServerError) as caught:
            servers.start_server("postgresql", root=parent / "servers")
        text = str(caught.value)
        if enterable or os.geteuid() != 0:
            assert "initdb failed" in text  # got as far as running initdb
        else:
            assert f"user 'postgres', which cannot enter {parent} (mode 700)" in text
            assert "such as /tmp" in text
            assert list((parent / "servers").iterdir()) == []
    finally:
        shutil.rmtree(parent)


# --- finding the programs --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pg_config", "found", "note"),
    [
        ("echo BINDIR", True, None),
        ("exit 2", False, "--bindir failed"),
        (BAD_INTERPRETER, False, "pg_config failed:"),
    ],
    ids=["reports-the-bindir", "fails", "cannot-run"],
)
def test_pg_config_tells_where_the_programs_are(
    monkeypatch: pytest.MonkeyPatch, pg_config: str, found: bool, note: str | None
) -> None:
    """The server programs are often off PATH; pg_config --bindir names their directory."""
    bindir = Path(tempfile.mkdtemp(prefix="pa-cfg-", dir="/tmp"))
    empty = Path(tempfile.mkdtemp(prefix="pa-empty-", dir="/tmp"))
    try:
        program = bindir / "pg_config"
        body = pg_config.replace("BINDIR", str(BINARIES.bindir))
        program.write_text(body if body.startswith("#!") else f"#!/bin/sh\n{body}\n")
        program.chmod(0o755)
        monkeypatch.setenv("PATH", str(bindir))
        if found:
            assert servers.find_postgresql_binaries(search_dirs=[empty]).bindir == BINARIES.bindir
        else:
            with pytest.raises(errors.ServerError) as caught:
                servers.find_postgresql_binaries(search_dirs=[empty])
            assert f"pg_config's bindir ({program}" in str(caught.value)
            assert f"{note}" in str(caught.value)
    finally:
        shutil.rmtree(bindir)
        shutil.rmtree(empty)


def test_without_path_or_pg_config_the_usual_directories_are_searched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    empty = Path(tempfile.mkdtemp(prefix="pa-empty-", dir="/tmp"))
    try:
        monkeypatch.setenv("PATH", str(empty))
        usual = [*servers._default_search_dirs()]
        installed = [path for path in usual if servers.PostgreSQLBinaries.in_directory(path)]
        if not installed:
            with pytest.raises(errors.ServerError, match="/usr/lib/postgresql/\\*/bin"):
                servers.find_postgresql_binaries()
            return
        assert servers.find_postgresql_binaries().bindir == installed[0]
        versions = [servers._version_key(path) for path in usual[: len(usual) - 1]]
        assert versions == sorted(versions, reverse=True)
    finally:
        shutil.rmtree(empty)


@pytest.mark.parametrize("account", ["postgres", "no-passwd-entry"])
def test_an_unprivileged_user_runs_the_server_as_itself(
    fake_bin: Callable[..., Path], account: str
) -> None:
    """Not root: nothing is handed to another user, even one missing from /etc/passwd.

    Containers started with ``--user 1234`` run as a uid that has no name.
    """
    fake_bin(initdb=INITDB_FAILS)
    uid = pwd.getpwnam("postgres").pw_uid if account == "postgres" else 54321
    parent = Path(tempfile.mkdtemp(prefix="pa-user-", dir="/tmp"))
    parent.chmod(0o755)
    servers_root = parent / "servers"
    switched = os.geteuid() == 0
    if switched:
        os.chown(parent, uid, -1)
        os.setresuid(uid, uid, 0)  # the saved uid lets the test become root again
    try:
        run_as = servers.PostgreSQLServer._run_as()
        assert not run_as.switch
        assert run_as.uid == os.geteuid()
        if switched and account == "no-passwd-entry":
            assert run_as.name == str(uid)
        else:
            assert run_as.name == pwd.getpwuid(os.getuid()).pw_name
        with pytest.raises(errors.ServerError, match="initdb failed"):
            servers.start_server("postgresql", root=servers_root)
        assert stat.S_IMODE(servers_root.stat().st_mode) == 0o700
        assert servers_root.stat().st_uid == os.geteuid()
        assert list(servers_root.iterdir()) == []
    finally:
        if switched:
            os.setresuid(0, 0, 0)
        shutil.rmtree(parent)


NOBODY = 65534


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to leave processes only root may signal")
def test_reaping_leaves_what_it_cannot_stop_or_delete_for_later() -> None:
    """A leftover server of another user is neither half-stopped nor half-deleted.

    Reaping as an unprivileged user: one orphan's server process belongs to root, so it
    can be neither stopped nor killed; another orphan holds files only root may delete.
    Both are left whole for a later reap, and stopping them by hand says what to do.
    """
    reap_root = Path(tempfile.mkdtemp(prefix="pa-reap-", dir="/tmp"))
    running, undeletable = reap_root / "pg-999991-abcdef", reap_root / "pg-999990-abcdef"
    (running / "data").mkdir(parents=True)
    (undeletable / "locked").mkdir(parents=True)
    (undeletable / "locked" / "file").write_text("")
    # A process of root's whose command line names the orphan's directory, like its server.
    process = subprocess.Popen(
        ["sh", "-c", "sleep 60; :", str(running / "data") + os.sep], start_new_session=True
    )
    dead = dataclasses.replace(RunIdentity.current(), started="1").to_dict()
    (running / "data" / "postmaster.pid").write_text(f"{process.pid}\n{running}/data\n")
    for directory, pid in ((running, process.pid), (undeletable, None)):
        record = {"kind": "postgresql", "owner": dead, "server_pid": pid}
        (directory / "owner.json").write_text(json.dumps(record))
    for path in (reap_root, running, running / "data", *running.glob("**/*"), undeletable):
        os.chown(path, NOBODY, NOBODY)
    os.chown(undeletable / "owner.json", NOBODY, NOBODY)
    try:
        os.setresuid(NOBODY, NOBODY, 0)  # the saved uid lets the test become root again
        try:
            assert servers.reap_orphans(reap_root) == []
            record = json.loads((running / "owner.json").read_text())
            with pytest.raises(errors.ServerError) as killing:
                servers.PostgreSQLServer._adopt(running, record).stop()
            with pytest.raises(errors.ServerError) as deleting:
                servers.PostgreSQLServer._adopt(undeletable, None).stop()
        finally:
            os.setresuid(0, 0, 0)
        assert f"could not kill server process {process.pid}" in str(killing.value)
        assert f"(kill -9 {process.pid}) as its owner or as root" in str(killing.value)
        assert f"its directory {undeletable} could not be deleted" in str(deleting.value)
        assert process.poll() is None
        assert (running / "data" / "postmaster.pid").is_file()
        assert (undeletable / "locked" / "file").is_file()
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        shutil.rmtree(reap_root)
