"""A throwaway server's data in RAM: on a tmpfs when there is room, on disk when asked or not.

Real servers, like ``test_servers.py``: their roots live directly under /tmp
(on disk here), their data in ``/dev/shm/pytest-alchemy-<uid>`` unless
``ALCHEMY_SERVER_RAM`` says otherwise. Tests that plant directories of their
own in RAM do it under a directory they name with ``ALCHEMY_SERVER_RAM``, so
that other runs on the machine never see them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import pytest_alchemy
from pytest_alchemy import errors, processes, servers
from pytest_alchemy.runs import RunIdentity
from pytest_alchemy.servers import kept, ram

from .helpers import server_scalar, wait_stopped

pytestmark = [pytest.mark.postgresql]
try:
    servers.find_postgresql_binaries()
except errors.ServerError:  # pragma: no cover - depends on the machine
    pytestmark.append(pytest.mark.skip(reason="the PostgreSQL server programs are not installed"))

GIB = 2**30
NOBODY = 65534


def _mount_type(path: Path) -> str | None:
    """The file system type of ``path``'s real location, read from /proc/mounts here."""
    real = os.path.realpath(path)
    best: tuple[str, str | None] = ("", None)
    for line in Path("/proc/mounts").read_text().splitlines():
        point, kind = line.split()[1:3]
        if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) >= len(
            best[0]
        ):
            best = (point, kind)
    return best[1]


def _shared_memory_is_roomy() -> bool:
    try:
        info = os.statvfs("/dev/shm")
    except OSError:  # pragma: no cover - depends on the machine
        return False
    return _mount_type(Path("/dev/shm")) == "tmpfs" and info.f_bavail * info.f_frsize >= GIB


needs_roomy_shm = pytest.mark.skipif(
    not _shared_memory_is_roomy(), reason="/dev/shm is not a tmpfs with 1 GiB free"
)


def _server_uid() -> int:
    return pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else os.geteuid()


def _child_environment(**extra: str) -> dict[str, str]:
    source = str(Path(pytest_alchemy.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "PYTHONPATH": source + (os.pathsep + path if path else ""),
        **extra,
    }


@pytest.fixture
def root() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="pa-ram-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ram.RAM_ENV, raising=False)


@pytest.fixture
def elsewhere(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on disk that ``ALCHEMY_SERVER_RAM`` names for the servers' data."""
    directory = Path(tempfile.mkdtemp(prefix="pa-ram-data-", dir="/tmp"))
    directory.chmod(0o755)
    monkeypatch.setenv(ram.RAM_ENV, str(directory))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


# --- where the data goes ---------------------------------------------------------------------


@needs_roomy_shm
def test_by_default_the_data_is_on_a_tmpfs_and_stop_deletes_it(root: Path, auto: None) -> None:
    server = servers.start_server("postgresql", root=root)
    home = server.ram_directory
    try:
        assert home is not None
        data = server.data_directory
        # The server is told the path in its own directory, which links to the data in RAM.
        assert data == server.directory / "data"
        assert data.is_symlink()
        assert Path(os.path.realpath(data)) == home / "data"
        assert home.parent == Path("/dev/shm") / f"pytest-alchemy-{os.getuid()}"
        assert home.name == server.directory.name
        assert _mount_type(data) == "tmpfs"
        assert os.stat(os.path.realpath(data)).st_dev == os.stat("/dev/shm").st_dev
        assert (data / "PG_VERSION").is_file()
        assert server_scalar(server.url, "show data_directory") == str(data)
        # Only the server's user may enter it.
        info = home.stat()
        assert stat.S_IMODE(info.st_mode) == 0o700
        assert info.st_uid == _server_uid()
        assert (home / "data").stat().st_uid == _server_uid()
        record = json.loads((home / "server.json").read_text())
        assert record["server_directory"] == str(server.directory)
        assert record["kind"] == "postgresql"
        assert json.loads(server.owner_file.read_text())["ram"] == str(home)
        assert server.data_note == f"data in RAM ({home})"
        pid = server.pid
    finally:
        server.stop()
    assert not home.exists()
    assert not server.directory.exists()
    assert wait_stopped(pid)


@needs_roomy_shm
def test_the_data_in_ram_is_deleted_at_the_interpreters_exit(root: Path, auto: None) -> None:
    script = textwrap.dedent(
        f"""
        import json
        from pathlib import Path
        from pytest_alchemy import servers

        server = servers.start_server("postgresql", root=Path({str(root)!r}))
        print(json.dumps([str(server.ram_directory), server.pid]), flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=_child_environment(),
        check=True,
    )
    home, pid = json.loads(done.stdout)
    assert home.startswith("/dev/shm/")
    assert not Path(home).exists()
    assert wait_stopped(pid)
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("value", ["off", "0", "OFF", "false"])
def test_off_keeps_the_data_on_disk(
    root: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(ram.RAM_ENV, value)
    with servers.start_server("postgresql", root=root) as server:
        data = server.data_directory
        assert not data.is_symlink()
        assert data.is_dir()
        assert server.ram_directory is None
        assert _mount_type(data) == _mount_type(root)
        assert server.data_note == f"data on disk ({ram.RAM_ENV}=off)"
        assert json.loads(server.owner_file.read_text())["ram"] is None


def test_a_path_puts_the_data_in_that_directory(root: Path, elsewhere: Path) -> None:
    with servers.start_server("postgresql", root=root) as server:
        home = server.ram_directory
        assert home == elsewhere.resolve() / server.directory.name
        assert Path(os.path.realpath(server.data_directory)) == home / "data"
        assert server_scalar(server.url, "select 1") == 1
        # On disk here: the note does not call it RAM.
        assert server.data_note == f"data in {home}"
    assert not home.exists()
    assert elsewhere.is_dir()  # the directory named is left, only the server's data goes


def test_a_path_that_cannot_hold_the_data_stops_the_start(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = root / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(ram.RAM_ENV, str(blocker / "data"))
    with pytest.raises(errors.ServerError) as caught:
        servers.start_server("postgresql", root=root)
    text = str(caught.value)
    assert f"{ram.RAM_ENV}={blocker / 'data'} asks for the throwaway postgresql server's" in text
    assert "set it to off" in text
    assert sorted(root.iterdir()) == [blocker]


def test_a_relative_path_is_refused_before_anything_runs(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ram.RAM_ENV, "somewhere/relative")
    with pytest.raises(errors.ServerError, match="neither auto, off, on nor an absolute path"):
        servers.start_server("postgresql", root=root)
    assert list(root.iterdir()) == []


def test_without_a_usable_memory_file_system_auto_falls_back_to_disk_and_on_fails(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where /dev/shm is missing or no tmpfs, the data stays on disk, unless RAM is demanded."""
    disk = root / "not-memory"
    disk.mkdir()
    monkeypatch.setattr(ram, "SHARED_MEMORY", disk)
    monkeypatch.delenv(ram.RAM_ENV, raising=False)
    with servers.start_server("postgresql", root=root) as server:
        assert server.ram_directory is None
        assert not server.data_directory.is_symlink()
        assert server.data_note.startswith(f"data on disk: {disk} is not a memory file system (")
    assert list(disk.iterdir()) == []

    monkeypatch.setenv(ram.RAM_ENV, "on")
    before = set(root.iterdir())
    with pytest.raises(errors.ServerError) as caught:
        servers.start_server("postgresql", root=root)
    text = str(caught.value)
    assert f"{ram.RAM_ENV}=on asks for the throwaway postgresql server's data in RAM" in text
    assert "is not a memory file system" in text
    assert set(root.iterdir()) == before


@needs_roomy_shm
@pytest.mark.parametrize("case", ["missing", "planted-link", "someone-elses"])
def test_a_shared_memory_directory_that_is_not_safe_or_not_there_falls_back_to_disk(
    root: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """Anyone may write in /dev/shm: a directory made there by someone else is never used."""
    if case == "someone-elses" and os.geteuid() != 0:
        pytest.skip("needs root, to make a directory of another user's")
    shm = Path(tempfile.mkdtemp(prefix="pa-shm-", dir="/dev/shm"))
    shm.chmod(0o1777)
    planted = shm / f"pytest-alchemy-{os.getuid()}"
    decoy = Path(tempfile.mkdtemp(prefix="pa-decoy-", dir="/dev/shm"))
    monkeypatch.delenv(ram.RAM_ENV, raising=False)
    monkeypatch.setattr(ram, "SHARED_MEMORY", shm / "missing" if case == "missing" else shm)
    if case == "planted-link":
        planted.symlink_to(decoy)
    elif case == "someone-elses":
        planted.mkdir()
        os.chown(planted, NOBODY, NOBODY)
    try:
        with servers.start_server("postgresql", root=root) as server:
            assert server.ram_directory is None
            assert not server.data_directory.is_symlink()
            if case == "missing":
                assert server.data_note == f"data on disk: there is no {shm / 'missing'}"
            else:
                assert server.data_note == (
                    f"data on disk: {planted} cannot hold it: {planted} is not a directory "
                    "owned by the current user"
                )
        assert list(decoy.iterdir()) == []
    finally:
        shutil.rmtree(shm)
        shutil.rmtree(decoy)


@needs_roomy_shm
def test_this_users_directory_in_shared_memory_is_closed_to_others(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shm = Path(tempfile.mkdtemp(prefix="pa-shm-", dir="/dev/shm"))
    shm.chmod(0o1777)
    mine = shm / f"pytest-alchemy-{os.getuid()}"
    mine.mkdir()
    mine.chmod(0o777)
    monkeypatch.delenv(ram.RAM_ENV, raising=False)
    monkeypatch.setattr(ram, "SHARED_MEMORY", shm)
    try:
        with servers.start_server("postgresql", root=root) as server:
            assert server.ram_directory == mine / server.directory.name
            expected = 0o711 if os.geteuid() == 0 else 0o700  # the server's user must enter
            assert stat.S_IMODE(mine.stat().st_mode) == expected
        assert list(mine.iterdir()) == []
    finally:
        shutil.rmtree(shm)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to leave files only root may delete")
def test_data_in_ram_that_cannot_be_deleted_is_reported_and_left(
    root: Path, elsewhere: Path
) -> None:
    directory = root / "pg-999990-abcdef"
    directory.mkdir()
    dead = dataclasses.replace(RunIdentity.current(), started="1")
    home = _plant(elsewhere.resolve(), directory.name, dead, directory)
    (home / "locked").mkdir()
    (home / "locked" / "file").write_text("")
    for path in (root, directory, home, home / "data"):
        os.chown(path, NOBODY, NOBODY)
    try:
        os.setresuid(NOBODY, NOBODY, 0)  # the saved uid lets the test become root again
        try:
            with pytest.raises(errors.ServerError) as caught:
                servers.PostgreSQLServer._adopt(directory, {"ram": str(home)}).stop()
        finally:
            os.setresuid(0, 0, 0)
        assert f"its data directory in RAM {home} could not be deleted" in str(caught.value)
        assert not directory.exists()
        assert (home / "locked" / "file").is_file()
    finally:
        shutil.rmtree(home)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the server then runs as postgres")
def test_a_path_the_servers_user_cannot_enter_stops_the_start(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = Path(tempfile.mkdtemp(prefix="pa-closed-", dir="/tmp"))
    closed.chmod(0o700)
    monkeypatch.setenv(ram.RAM_ENV, str(closed / "data"))
    try:
        with pytest.raises(errors.ServerError) as caught:
            servers.start_server("postgresql", root=root)
        assert f"the server's user 'postgres' cannot enter {closed} (mode 700)" in str(caught.value)
        assert list(root.iterdir()) == []
        assert list((closed / "data").iterdir()) == []
    finally:
        shutil.rmtree(closed)


def test_the_size_rule_wants_a_gibibyte_of_a_sized_memory_file_system() -> None:
    shm = Path("/dev/shm")
    docker = 64 * 2**20  # Docker's default /dev/shm
    said = ram.refusal(shm, "tmpfs", docker, docker)
    assert said == "/dev/shm has 64 MiB free, less than the 1 GiB wanted"
    assert ram.refusal(shm, "tmpfs", GIB - 1, 24 * GIB) is not None
    assert ram.refusal(shm, "tmpfs", GIB, 24 * GIB) is None
    assert ram.refusal(shm, "ramfs", 0, 0) is None  # no size: grows with what it holds
    assert ram.refusal(shm, "ext4", 100 * GIB, 200 * GIB) == (
        "/dev/shm is not a memory file system (ext4)"
    )
    assert ram.refusal(shm, None, 0, 0) == "/dev/shm is not a memory file system (unknown)"


def test_the_file_system_type_is_read_from_the_mount_table(tmp_path: Path) -> None:
    table = tmp_path / "mounts"
    table.write_text(
        "/dev/vda / ext4 rw 0 0\n"
        "tmpfs /dev/shm tmpfs rw 0 0\n"
        "tmpfs /mnt/with\\040space tmpfs rw 0 0\n"
        "short\n"
        "/dev/vdb /mnt/with\\040space xfs rw 0 0\n"
    )
    assert ram.filesystem_type(Path("/dev/shm/x"), table) == "tmpfs"
    assert ram.filesystem_type(Path("/dev/shmx"), table) == "ext4"
    assert ram.filesystem_type(Path("/mnt/with space/a"), table) == "xfs"  # the later mount
    assert ram.filesystem_type(Path("/"), tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("value", "mode"),
    [("", "auto"), (" Auto ", "auto"), ("no", "off"), ("1", "on"), ("yes", "on")],
)
def test_the_setting_is_read_from_the_environment(value: str, mode: str) -> None:
    assert ram.setting({ram.RAM_ENV: value}) == ram.RamSetting(mode)
    assert ram.setting({}) == ram.RamSetting("auto")
    assert ram.setting({ram.RAM_ENV: "/srv/ram"}) == ram.RamSetting("path", Path("/srv/ram"))
    assert ram.roots({ram.RAM_ENV: "relative"}) == [ram.default_root()]
    assert ram.roots({ram.RAM_ENV: "/srv/ram"}) == [ram.default_root(), Path("/srv/ram")]


@needs_roomy_shm
def test_a_server_directory_already_in_ram_keeps_its_data(auto: None) -> None:
    parent = Path(tempfile.mkdtemp(prefix="pa-", dir="/dev/shm"))
    parent.chmod(0o755)
    try:
        with servers.start_server("postgresql", root=parent / "servers") as server:
            assert server.ram_directory is None
            assert not server.data_directory.is_symlink()
            assert server.data_note == f"data in RAM ({server.data_directory})"
    finally:
        shutil.rmtree(parent)


# --- kept data stays on disk -----------------------------------------------------------------


@pytest.fixture
def cache() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="pa-cache-", dir="/tmp"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@needs_roomy_shm
def test_kept_data_stays_on_disk_and_data_that_cannot_be_kept_goes_to_ram(
    root: Path, cache: Path, auto: None
) -> None:
    with servers.start_server("postgresql", root=root, keep=cache) as server:
        home = server.kept
        assert home is not None
        assert server.data_directory == home / "data"
        assert not server.data_directory.is_symlink()
        assert _mount_type(server.data_directory) == _mount_type(cache)
        assert server.ram_directory is None
        assert server.data_note == f"data kept in {home}"
        assert "RAM" not in server.keep_note
    assert (home / "data" / "PG_VERSION").is_file()

    # Another run holds the kept data: this server's data is thrown away, so it is in RAM.
    lock = kept.KeptLock(home)
    assert lock.acquire()
    try:
        with servers.start_server("postgresql", root=root, keep=cache) as server:
            assert server.kept is None
            place = server.ram_directory
            assert place is not None
            assert _mount_type(server.data_directory) == "tmpfs"
            assert server.keep_note == (
                f"reuse is off: another pytest run is using {home}; data in RAM ({place})"
            )
        assert not place.exists()
    finally:
        lock.release()


# --- runs that died --------------------------------------------------------------------------

KILLED = """
import json, os, signal
from pathlib import Path
from pytest_alchemy import servers

server = servers.start_server("postgresql", root=Path({root!r}))
print(json.dumps([str(server.directory), str(server.ram_directory), server.pid]), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _killed_run(root: Path) -> tuple[Path, Path, int]:
    """Start a server in a child that is then killed: its server directory, data in RAM, pid."""
    child = subprocess.run(
        [sys.executable, "-c", KILLED.format(root=str(root))],
        capture_output=True,
        text=True,
        timeout=60,
        env=_child_environment(),
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    directory, home, pid = json.loads(child.stdout)
    assert processes.running(pid)  # the killed run could not stop its server
    return Path(directory), Path(home), pid


@needs_roomy_shm
def test_reaping_a_killed_runs_server_deletes_its_data_in_ram(root: Path, auto: None) -> None:
    directory, home, pid = _killed_run(root)
    assert home.parent == ram.default_root()
    assert (home / "data" / "PG_VERSION").is_file()

    assert servers.reap_orphans(root) == [directory]

    assert wait_stopped(pid)
    assert not directory.exists()
    assert not home.exists()


def test_data_in_ram_whose_server_directory_is_gone_is_stopped_and_deleted(
    root: Path, elsewhere: Path
) -> None:
    """A killed run's server directory deleted since (a cleaned /tmp): its data is found anyway."""
    directory, home, pid = _killed_run(root)
    assert home.parent == elsewhere.resolve()
    shutil.rmtree(directory)

    assert servers.reap_orphans(root) == []

    assert wait_stopped(pid)
    assert not home.exists()
    assert elsewhere.is_dir()


def test_a_killed_run_without_an_owner_record_is_found_by_its_link(
    root: Path, elsewhere: Path
) -> None:
    directory, home, pid = _killed_run(root)
    (directory / "owner.json").unlink()
    long_ago = time.time() - servers.ORPHAN_GRACE - 60
    os.utime(directory, (long_ago, long_ago))

    assert servers.reap_orphans(root) == [directory]

    assert wait_stopped(pid)
    assert not home.exists()


def _plant(parent: Path, name: str, owner: RunIdentity, server_directory: Path) -> Path:
    home = parent / name
    (home / "data").mkdir(parents=True)
    record = {
        "kind": "postgresql",
        "server_directory": str(server_directory),
        "owner": owner.to_dict(),
    }
    (home / "server.json").write_text(json.dumps(record))
    return home


def test_reaping_data_in_ram_spares_what_is_alive_still_served_or_not_ours(
    root: Path, elsewhere: Path
) -> None:
    here = RunIdentity.current()
    dead = dataclasses.replace(here, started="1")
    parent = elsewhere.resolve()
    gone = root / "pg-999999-abcdef"
    existing = root / "pg-999998-abcdef"
    existing.mkdir()
    orphan = _plant(parent, "pg-999999-abcdef", dead, gone)
    alive = _plant(parent, "pg-999997-abcdef", here, root / "pg-999997-abcdef")
    served = _plant(parent, "pg-999998-abcdef", dead, existing)
    other_host = _plant(
        parent, "pg-999996-abcdef", dataclasses.replace(here, host=here.host + "-x"), gone
    )
    unknown_kind = _plant(parent, "xy-999995-abcdef", dead, gone)
    (unknown_kind / "server.json").write_text(
        json.dumps({"kind": "unknown", "server_directory": str(gone), "owner": dead.to_dict()})
    )
    no_record = parent / "pg-999994-abcdef"
    (no_record / "data").mkdir(parents=True)
    unrelated = _plant(parent, "something-else", dead, gone)
    link = parent / "pg-999993-abcdef"
    link.symlink_to(orphan)

    assert servers.reap_orphans(root) == []

    assert not orphan.exists()
    for spared in (alive, served, other_host, unknown_kind, no_record, unrelated):
        assert spared.is_dir(), spared
    assert link.is_symlink()


def test_a_server_deletes_only_its_own_data_in_ram(root: Path, elsewhere: Path) -> None:
    """An owner record naming a directory in RAM of another server does not delete it."""
    other = _plant(elsewhere.resolve(), "pg-999992-abcdef", RunIdentity.current(), root / "x")
    directory = root / "pg-999991-abcdef"
    directory.mkdir()
    dead = dataclasses.replace(RunIdentity.current(), started="1")
    record = {"kind": "postgresql", "owner": dead.to_dict(), "server_pid": None, "ram": str(other)}
    (directory / "owner.json").write_text(json.dumps(record))

    assert servers.reap_orphans(root) == [directory]

    assert other.is_dir()
