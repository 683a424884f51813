"""``alchemy_server = postgresql``: the tests run on a server the plugin starts and stops.

The tests inside the generated project write where their server lives (its
directory and main process id); afterwards the directory must be gone and the
process stopped. A run killed outright leaves its server behind; the next run
stops it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_alchemy import errors, processes, servers

from .helpers import MODELS, Project, scrub_alchemy_env, wait_stopped

# Every test here needs the PostgreSQL server programs (the whole module skips without).
pytestmark = [pytest.mark.postgresql]
try:
    servers.find_postgresql_binaries()
except errors.ServerError:  # pragma: no cover - depends on the machine
    pytestmark.append(pytest.mark.skip(reason="the PostgreSQL server programs are not installed"))

WHERE = """
import json
from pathlib import Path

from sqlalchemy import text


def test_where(alchemy_connection, alchemy_database):
    url = alchemy_database.url
    directory = Path(url.query["host"])
    pid = int((directory / "data" / "postmaster.pid").read_text().split()[0])
    Path("server.json").write_text(json.dumps({
        "directory": str(directory),
        "pid": pid,
        "name": alchemy_database.name,
        "driver": url.drivername,
        "port": url.query.get("port"),
        "current": alchemy_connection.scalar(text("SELECT current_database()")),
        "listen": alchemy_connection.scalar(text("SHOW listen_addresses")),
    }))
"""


@pytest.fixture
def server_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Project:
    scrub_alchemy_env(monkeypatch)
    project = Project(pytester, "postgresql")
    project.write("models.py", MODELS)
    project.ini()
    return project


def where(project: Project) -> dict[str, Any]:
    path = project.path / "server.json"
    data = json.loads(path.read_text())
    path.unlink()
    assert isinstance(data, dict)
    return data


def test_the_server_is_started_for_the_run_and_gone_after_it(server_project: Project) -> None:
    server_project.tests(WHERE)
    result = server_project.run("--alchemy-server", "postgresql", url=False)
    result.assert_outcomes(passed=1)
    seen = where(server_project)
    directory = Path(seen["directory"])
    assert directory.parent == servers.default_root().resolve()
    assert directory.name.startswith("pg-")
    assert seen["current"] == seen["name"]
    assert seen["name"].startswith("test_")
    assert seen["listen"] == ""  # unix socket only
    assert "throwaway postgresql server" in result.stdout.str()
    assert wait_stopped(seen["pid"])
    assert not directory.exists()


def test_the_url_names_the_driver_and_database_and_a_port_gives_tcp(
    server_project: Project,
) -> None:
    server_project.ini("alchemy_url = postgresql+psycopg:///myapp")
    server_project.tests(
        WHERE
        + """

def test_tcp(alchemy_database):
    import sqlalchemy as sa

    port = int(alchemy_database.url.query["port"])
    tcp = sa.create_engine(
        sa.URL.create(
            "postgresql+psycopg", username="postgres", host="127.0.0.1", port=port,
            database=alchemy_database.name,
        ),
        poolclass=sa.pool.NullPool,
    )
    with tcp.connect() as connection:
        assert connection.scalar(sa.text("SELECT current_database()")) == "test_myapp"
        assert connection.scalar(sa.text("SELECT inet_server_port()")) == port
    tcp.dispose()
"""
    )
    result = server_project.run(
        "--alchemy-server", "postgresql", "--alchemy-server-port", "0", url=False
    )
    result.assert_outcomes(passed=2)
    seen = where(server_project)
    assert (seen["name"], seen["current"]) == ("test_myapp", "test_myapp")
    assert seen["driver"] == "postgresql+psycopg"
    assert seen["listen"] == "127.0.0.1"
    assert int(seen["port"]) > 0
    assert wait_stopped(seen["pid"])
    assert not Path(seen["directory"]).exists()


def test_a_server_left_by_a_killed_run_is_stopped_by_the_next_run(server_project: Project) -> None:
    server_project.tests(
        WHERE
        + """

def test_killed(alchemy_connection):
    import os, signal

    os.kill(os.getpid(), signal.SIGKILL)
""",
    )
    result = server_project.run("--alchemy-server", "postgresql", "-p", "no:randomly", url=False)
    assert result.ret == -signal.SIGKILL
    seen = where(server_project)
    orphan = Path(seen["directory"])
    try:
        assert orphan.is_dir()
        assert processes.running(seen["pid"])  # nobody stopped it

        result = server_project.run("--alchemy-server", "postgresql", "-k", "test_where", url=False)
        result.assert_outcomes(passed=1)
        assert any(
            line.startswith("stopped throwaway servers left by dead runs:") and str(orphan) in line
            for line in result.outlines
        ), result.outlines
        assert wait_stopped(seen["pid"])
        assert not orphan.exists()
        fresh = where(server_project)
        assert fresh["directory"] != str(orphan)
        assert not Path(fresh["directory"]).exists()
    finally:
        if orphan.exists():
            servers.reap_orphans()


# -- reuse_db: the server's data kept in pytest's cache ------------------------------------

KEPT = """
import json
from pathlib import Path

from sqlalchemy import text


def test_kept(alchemy_connection, alchemy_database):
    data = Path(alchemy_connection.scalar(text("SHOW data_directory")))
    Path("server.json").write_text(json.dumps({
        "data": str(data),
        "pid": int((data / "postmaster.pid").read_text().split()[0]),
        "socket": alchemy_database.url.query["host"],
        "token": alchemy_connection.scalar(text("SELECT token FROM build_token")),
        "reused": alchemy_database.reused,
    }))
"""

REUSE = ("--alchemy-server", "postgresql", "--alchemy-reuse-db")


@pytest.fixture
def cache_dir() -> Iterator[Path]:
    """pytest's cache directory for the project, where the server's user may enter it."""
    directory = Path(tempfile.mkdtemp(prefix="pa-cache-", dir="/tmp"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def kept_project(server_project: Project, cache_dir: Path) -> Project:
    # The token is made once, when the test database is built: equal tokens, no rebuild.
    server_project.ini(
        f"""
        cache_dir = {cache_dir}
        alchemy_init_sql = CREATE TABLE build_token AS SELECT md5(random()::text) AS token
        """
    )
    server_project.tests(KEPT)
    return server_project


def run_with_cache(project: Project, *args: str) -> pytest.RunResult:
    """Run the project with pytest's cache on (``Project.run`` turns it off)."""
    return project.pytester.runpytest_subprocess(*args, timeout=180)


def serving(data: Path) -> list[int]:
    """The processes whose command line names the data directory ``data``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            command = processes.command_line(int(entry.name)) or ""
            if f" {data} " in f" {command} ":
                found.append(int(entry.name))
    return found


def assert_kept_and_stopped(seen: dict[str, Any]) -> None:
    """Between runs: the kept data is there, and no server runs on it."""
    data = Path(seen["data"])
    assert wait_stopped(seen["pid"])
    assert (data / "PG_VERSION").is_file()
    assert not (data / "postmaster.pid").exists()  # shut down cleanly
    assert not Path(seen["socket"]).exists()  # the run's own directory is gone
    assert serving(data) == []


def test_reuse_db_keeps_the_servers_data_in_the_cache_and_the_next_run_reuses_it(
    kept_project: Project, cache_dir: Path
) -> None:
    major = servers.PostgreSQLServer().major
    home = cache_dir / "d" / "alchemy-servers" / f"postgresql-{major}"
    first = run_with_cache(kept_project, *REUSE)
    first.assert_outcomes(passed=1)
    built = where(kept_project)
    assert Path(built["data"]) == home / "data"
    assert built["reused"] is False
    first.stdout.fnmatch_lines(
        [
            f"alchemy: the throwaway server's data is kept for reuse in {home}; the server "
            "is stopped at exit",
            "*: built (new database)*at the end: kept for reuse",
            f"throwaway postgresql * server: data in {home} made; kept for the next run, "
            "the server stopped",
        ]
    )
    assert_kept_and_stopped(built)

    second = run_with_cache(kept_project, *REUSE)
    second.assert_outcomes(passed=1)
    reused = where(kept_project)
    assert (reused["data"], reused["token"], reused["reused"]) == (
        built["data"],
        built["token"],
        True,
    )
    assert reused["socket"] != built["socket"]
    second.stdout.fnmatch_lines(
        [
            "*: reused (fingerprint * matches)*at the end: kept for reuse",
            f"throwaway postgresql * server: data in {home} reused; kept for the next run*",
        ]
    )
    assert_kept_and_stopped(reused)

    anew = run_with_cache(kept_project, *REUSE, "--alchemy-create-db")
    anew.assert_outcomes(passed=1)
    rebuilt = where(kept_project)
    assert rebuilt["data"] == built["data"]
    assert rebuilt["token"] != built["token"]
    assert rebuilt["reused"] is False
    anew.stdout.fnmatch_lines(
        [
            "alchemy: the throwaway server's data is kept for reuse in * (made anew: "
            "alchemy_create_db)*",
            f"throwaway postgresql * server: data in {home} made anew (alchemy_create_db); *",
        ]
    )
    assert_kept_and_stopped(rebuilt)

    # Without reuse_db nothing is kept: the server's own data directory goes with it.
    plain = run_with_cache(kept_project, "--alchemy-server", "postgresql")
    plain.assert_outcomes(passed=1)
    gone = where(kept_project)
    assert Path(gone["data"]).parent == Path(gone["socket"])
    assert wait_stopped(gone["pid"])
    assert not Path(gone["socket"]).exists()
    assert "kept" not in plain.stdout.str()
    assert (home / "data" / "PG_VERSION").is_file()  # the kept data is left alone


def test_a_killed_runs_server_on_kept_data_is_stopped_and_its_data_kept(
    kept_project: Project,
) -> None:
    kept_project.tests(
        KEPT
        + """

def test_killed(alchemy_connection):
    import os, signal

    os.kill(os.getpid(), signal.SIGKILL)
"""
    )
    killed = run_with_cache(kept_project, *REUSE, "-p", "no:randomly")
    assert killed.ret == -signal.SIGKILL
    seen = where(kept_project)
    try:
        assert processes.running(seen["pid"])  # nobody stopped it
        result = run_with_cache(kept_project, *REUSE, "-k", "test_kept")
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(
            [
                # The killed run never finished with the database: rebuilt, not trusted.
                "*: built (the previous run using it did not finish)*kept for reuse",
                "throwaway postgresql * server: data in * reused; kept for the next run*",
                f"stopped throwaway servers left by dead runs: {seen['socket']}",
            ]
        )
        assert wait_stopped(seen["pid"])
        after = where(kept_project)
        assert after["data"] == seen["data"]
        assert_kept_and_stopped(after)
    finally:
        if processes.running(seen["pid"]):
            servers.reap_orphans()


def test_a_stale_pid_file_in_kept_data_is_cleared_and_its_process_left_alone(
    kept_project: Project,
) -> None:
    run_with_cache(kept_project, *REUSE).assert_outcomes(passed=1)
    seen = where(kept_project)
    assert_kept_and_stopped(seen)
    # A server killed with its run leaves its pid file; the pid may belong to another
    # process since (here one of the server's user, which the server would take for
    # a live server on its data, and refuse to start).
    root = os.geteuid() == 0
    stranger = subprocess.Popen(["sleep", "120"], user="postgres" if root else None)
    try:
        pid_file = Path(seen["data"]) / "postmaster.pid"
        pid_file.write_text(f"{stranger.pid}\n{seen['data']}\n")
        result = run_with_cache(kept_project, *REUSE)
        result.assert_outcomes(passed=1)
        after = where(kept_project)
        assert (after["data"], after["token"], after["reused"]) == (
            seen["data"],
            seen["token"],
            True,
        )
        assert stranger.poll() is None  # never signalled
        assert_kept_and_stopped(after)
    finally:
        stranger.kill()
        stranger.wait()


def test_kept_data_of_another_major_version_turns_reuse_off_until_create_db(
    kept_project: Project,
) -> None:
    run_with_cache(kept_project, *REUSE).assert_outcomes(passed=1)
    seen = where(kept_project)
    data = Path(seen["data"])
    major = (data / "PG_VERSION").read_text().strip()
    (data / "PG_VERSION").write_text("9.6\n")

    result = run_with_cache(kept_project, *REUSE)
    result.assert_outcomes(passed=1)
    why = f"the data in {data.parent} was made by postgresql 9.6, and this server is {major}"
    result.stdout.fnmatch_lines(
        [
            f"alchemy: reuse_db cannot keep the throwaway server's data: {why}; run once with "
            "alchemy_create_db to make it anew, or delete it; this run's server and its data "
            "are deleted at exit",
            "*: built (new database)*at the end: deleted with the throwaway server",
            f"throwaway postgresql * server: reuse is off: {why}; *its data is deleted with it",
        ]
    )
    assert "kept for reuse" not in result.stdout.str()
    elsewhere = where(kept_project)
    assert Path(elsewhere["data"]).parent == Path(elsewhere["socket"])
    assert not Path(elsewhere["socket"]).exists()
    assert (data / "PG_VERSION").read_text() == "9.6\n"  # left as it was

    anew = run_with_cache(kept_project, *REUSE, "--alchemy-create-db")
    anew.assert_outcomes(passed=1)
    assert where(kept_project)["data"] == str(data)
    assert (data / "PG_VERSION").read_text().strip() == major


def test_reuse_db_without_pytests_cache_says_the_server_is_deleted(
    kept_project: Project,
) -> None:
    result = run_with_cache(kept_project, *REUSE, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "alchemy: reuse_db cannot keep the throwaway server's data: pytest's cache, where "
            "it would be kept, is disabled (-p no:cacheprovider); *deleted at exit",
            "*at the end: deleted with the throwaway server",
            "throwaway postgresql * server: reuse is off: pytest's cache*",
        ]
    )
    assert "kept for reuse" not in result.stdout.str()
    seen = where(kept_project)
    assert wait_stopped(seen["pid"])
    assert not Path(seen["socket"]).exists()


def test_a_second_run_while_the_first_holds_the_kept_data_uses_a_throwaway_server(
    kept_project: Project,
) -> None:
    kept_project.tests(
        """
import time
from pathlib import Path


def test_hold(alchemy_connection):
    Path("holding").write_text("")
    deadline = time.monotonic() + 120
    while not Path("release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
""",
        name="test_hold.py",
    )
    path = kept_project.path
    first = subprocess.Popen(
        [sys.executable, "-m", "pytest", *REUSE, "test_hold.py"],
        cwd=path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (path / "holding").exists():
            assert first.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = run_with_cache(kept_project, *REUSE, "test_app.py")
        second.assert_outcomes(passed=1)
        busy = f"another pytest run is using * pid {first.pid} on *"
        second.stdout.fnmatch_lines(
            [
                f"alchemy: reuse_db cannot keep the throwaway server's data: {busy}; this run's "
                "server and its data are deleted at exit",
                "*at the end: deleted with the throwaway server",
                f"throwaway postgresql * server: reuse is off: {busy}; *its data is deleted*",
            ]
        )
        assert "kept for reuse" not in second.stdout.str()
        seen = where(kept_project)
        assert Path(seen["data"]).parent == Path(seen["socket"])
        assert wait_stopped(seen["pid"])
        assert not Path(seen["socket"]).exists()
    finally:
        (path / "release").write_text("")
        output, _ = first.communicate(timeout=120)
    assert first.returncode == 0, output
    assert "kept for the next run" in output


def test_a_cache_the_servers_user_cannot_enter_turns_reuse_off_and_says_why(
    server_project: Project,
) -> None:
    """As root the server runs as postgres, which cannot enter a cache under a private
    directory (pytester's is one); as any other user the server runs as that user."""
    private = server_project.path / "private"
    private.mkdir(mode=0o700)
    server_project.ini(
        f"""
        cache_dir = {private / "cache"}
        alchemy_init_sql = CREATE TABLE build_token AS SELECT md5(random()::text) AS token
        """
    )
    server_project.tests(KEPT)
    result = run_with_cache(server_project, *REUSE)
    result.assert_outcomes(passed=1)
    seen = where(server_project)
    assert wait_stopped(seen["pid"])
    if os.geteuid() != 0:
        assert seen["data"].startswith(str(private))
        assert "kept for the next run" in result.stdout.str()
        return
    result.stdout.fnmatch_lines(
        [
            "alchemy: reuse_db cannot keep the throwaway server's data: the server runs as "
            "user 'postgres' (the tests run as root), which cannot enter * (mode 700); set "
            "pytest's cache_dir to a directory every user may enter, or run the tests as "
            "another user; *deleted at exit",
            "*at the end: deleted with the throwaway server",
        ]
    )
    assert "kept for reuse" not in result.stdout.str()
    assert not Path(seen["socket"]).exists()


def test_each_xdist_worker_keeps_and_reuses_its_own_servers_data(
    kept_project: Project, cache_dir: Path
) -> None:
    kept_project.tests("def test_one(alchemy_session):\n    pass\n", name="test_app.py")
    kept_project.tests("def test_two(alchemy_session):\n    pass\n", name="test_more.py")
    folder = cache_dir / "d" / "alchemy-servers"
    for run, status in ((1, "built (new database)"), (2, "reused (fingerprint * matches)")):
        result = run_with_cache(kept_project, *REUSE, "-n", "2", "-p", "no:randomly")
        result.assert_outcomes(passed=2)
        lines = [f"database test_alchemy_{worker} on *: {status}*" for worker in ("gw0", "gw1")]
        done = "reused" if run == 2 else "made"
        result.stdout.fnmatch_lines(
            [f"alchemy: the throwaway server's data is kept for reuse in {folder}/gw0/*, *gw1/*"]
        )
        for worker, line in zip(("gw0", "gw1"), lines, strict=True):
            result.stdout.fnmatch_lines(
                [line, f"throwaway postgresql * server: data in {folder}/{worker}/* {done};*"]
            )
    for worker in ("gw0", "gw1"):
        (data,) = (folder / worker).glob("postgresql-*/data")
        assert (data / "PG_VERSION").is_file()
        assert serving(data) == []


def test_kept_data_locked_by_a_run_that_left_no_holder_record_is_not_shared(
    kept_project: Project, cache_dir: Path
) -> None:
    import fcntl

    major = servers.PostgreSQLServer().major
    home = cache_dir / "d" / "alchemy-servers" / f"postgresql-{major}"
    run_with_cache(kept_project, *REUSE).assert_outcomes(passed=1)
    # Another run took the lock but has not written who it is yet.
    with open(home / "lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = run_with_cache(kept_project, *REUSE)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*: built (new database)*at the end: deleted with the throwaway server",
            f"throwaway postgresql * server: reuse is off: another pytest run is using {home}; "
            "*its data is deleted with it",
        ]
    )
    seen = where(kept_project)
    assert Path(seen["data"]).parent == Path(seen["socket"]), "a server of its own"
    assert (home / "data" / "PG_VERSION").is_file(), "the kept data is left alone"
