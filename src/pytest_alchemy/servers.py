"""Throwaway database servers: started from the installed binaries for one test run, then deleted.

A throwaway server lives in its own small directory (data, socket, log and an
owner record) under a per-user root in the temporary directory. This module
keeps three promises:

* **It never leaves a server running after the run.** :meth:`ThrowawayServer.stop`
  is registered with :mod:`atexit` as soon as the server is up, so a normal
  interpreter exit, including one caused by Ctrl-C, stops the server and deletes
  its directory. A run killed outright (SIGKILL, a crash, or a signal Python
  has no handler for, such as SIGTERM) cannot clean up after itself; its
  server is found by the owner record and stopped by :func:`reap_orphans` in
  the next run, which never touches the servers of runs that are still alive.
* **It works as root.** PostgreSQL refuses to run as root, which is what CI
  containers usually are; the server is then run as the unprivileged
  ``postgres`` user, and its directories are handed to that user.
* **It opens no TCP port unless asked.** By default the server listens only on
  a unix socket inside its own directory, so it cannot collide with another
  server on the machine or be reached from the network.

The failure this prevents is the one of hand-managed test servers: a forgotten
postmaster that keeps running (and keeps its port) long after the tests, or a
second run that connects to the first run's server and destroys its data.

Each kind of server is one subclass of :class:`ThrowawayServer`, listed in
:data:`SERVERS`; :func:`start_server` starts one by name.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy.engine import URL

from . import errors, files, processes
from .runs import RunIdentity

__all__ = [
    "SERVERS",
    "PostgreSQLBinaries",
    "PostgreSQLServer",
    "ThrowawayServer",
    "default_root",
    "find_postgresql_binaries",
    "reap_orphans",
    "start_server",
]

ORPHAN_GRACE = 600.0
"""Seconds after which a server directory without a readable owner record counts as abandoned."""

SOCKET_PATH_LIMIT = 103
"""Longest unix socket path, in bytes, that works on every supported system."""

OWNER_FILE = "owner.json"
LOG_FILE = "server.log"
DATA_DIR = "data"

_DIRECTORY_NAME = re.compile(r"^(?P<prefix>[a-z]+)-(?P<pid>\d+)-(?P<tag>[0-9a-f]{6})$")
_STOP_WAIT = 10.0

_S = TypeVar("_S", bound="ThrowawayServer")


def default_root() -> Path:
    """Where throwaway servers live unless told otherwise: one directory per user.

    It is in the temporary directory, or in /tmp when the temporary directory's
    path is too long for the unix sockets below it.
    """
    name = f"pytest-alchemy-{os.getuid()}"
    root = Path(tempfile.gettempdir()) / name
    return Path("/tmp") / name if _socket_path_too_long(root) else root


# --- processes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RunAs:
    """The operating-system user the server processes run as."""

    name: str
    uid: int
    gid: int
    switch: bool
    """True when this is not the current user (the current user is root)."""


# The process functions under the names this module gave them before they moved.
_process_running = processes.running
_command_line = processes.command_line
_wait_gone = processes.wait_gone


def _kill(pid: int) -> None:
    """SIGKILL the server process ``pid`` and its children; say what to do when not allowed."""
    try:
        processes.kill_tree(pid)
    except PermissionError as exc:
        raise errors.ServerError(
            errors.message(
                f"could not kill server process {pid}: {exc}. Stop it by hand "
                f"(kill -9 {pid}) as its owner or as root."
            )
        ) from exc


def _tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file; "" when there is none."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


# --- the base class --------------------------------------------------------------------------


class ThrowawayServer(ABC):
    """A database server that belongs to one process and is deleted when it stops.

    Subclasses name the server (:attr:`kind`, :attr:`prefix`), the unprivileged
    user it runs as when the current user is root (:attr:`service_user`), and
    implement :meth:`_launch`, :meth:`_shutdown`, :meth:`_read_pid`,
    :attr:`url` and :attr:`version`; they must be constructible with keyword
    arguments only, all of them optional. Everything else (the directory layout,
    the owner record, running as another user, stopping at exit, the kill
    fallback and reaping) is shared.

    Layout of one server, under ``root``::

        <prefix>-<pid>-<random>/   the server directory, owned by the server's user
            data/                  the data directory
            server.log             everything the server wrote
            owner.json             who owns the server, and its process id
            (sockets)              the unix sockets
    """

    kind: str = ""
    """The name :func:`start_server` knows this server by."""
    prefix: str = ""
    """The start of the server directory's name; lowercase letters only."""
    service_user: str = ""
    """The operating-system user the server runs as when the current user is root."""

    def __init__(
        self,
        *,
        root: Path | None = None,
        port: int | None = None,
        timeout: float = 60.0,
    ) -> None:
        if port is not None and not 0 <= port <= 65535:
            raise errors.ServerError(
                errors.message(
                    f"port {port} is not a TCP port. Pass a number from 1 to 65535, "
                    "0 to pick a free port, or None for no TCP at all."
                )
            )
        self.root = root
        self.requested_port = port
        self.timeout = timeout
        self._directory: Path | None = None
        self._pid: int | None = None
        self._owner_pid = os.getpid()
        self._started_at = 0.0
        self._stopped = False

    # -- what every kind implements -------------------------------------------------------

    @property
    @abstractmethod
    def url(self) -> URL:
        """The URL of the server's maintenance database, with its socket as the host."""

    @property
    @abstractmethod
    def version(self) -> str:
        """The server version, such as ``"15.18"``."""

    @abstractmethod
    def _preflight(self) -> None:
        """Fail before anything is created when the server cannot be started at all."""

    @abstractmethod
    def _launch(self, run_as: _RunAs) -> int:
        """Create the data directory and start the server; return its main process id."""

    @abstractmethod
    def _shutdown(self, run_as: _RunAs) -> None:
        """Ask the running server to stop at once; raise :class:`ServerError` when it will not."""

    @abstractmethod
    def _read_pid(self) -> int | None:
        """The main process id the server recorded in its data directory, if any."""

    # -- layout ---------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        """The server directory; it exists from :meth:`start` until :meth:`stop`."""
        if self._directory is None:
            raise self._not_running()
        return self._directory

    @property
    def data_directory(self) -> Path:
        return self.directory / DATA_DIR

    @property
    def log_file(self) -> Path:
        return self.directory / LOG_FILE

    @property
    def owner_file(self) -> Path:
        return self.directory / OWNER_FILE

    @property
    def socket_directory(self) -> Path:
        return self.directory

    @property
    def pid(self) -> int:
        """The process id of the running server."""
        if self._pid is None or self._stopped:
            raise self._not_running()
        return self._pid

    def _not_running(self) -> errors.ServerError:
        state = "has been stopped" if self._stopped else "has not been started"
        return errors.ServerError(
            errors.message(
                f"the throwaway {self.kind} server {state}; start a new one with start_server()."
            )
        )

    @property
    def running(self) -> bool:
        return self._pid is not None and not self._stopped

    # -- life cycle -----------------------------------------------------------------------

    def start(self: _S) -> _S:
        """Create the server directory, start the server and arrange for it to stop at exit."""
        if self._directory is not None:
            raise errors.ServerError(
                errors.message(
                    f"this {self.kind} server was already started; create a new one instead."
                )
            )
        self._preflight()
        run_as = self._run_as()
        root = self._prepare_root(run_as)
        self._directory = self._make_directory(root, run_as)
        self._owner_pid = os.getpid()
        self._started_at = time.time()
        try:
            self._write_owner()
            self._pid = self._launch(run_as)
            self._write_owner()
        except BaseException:
            self._stopped = True
            with contextlib.suppress(errors.ServerError):
                self._halt()
                shutil.rmtree(self._directory, ignore_errors=True)
            raise
        atexit.register(self._stop_at_exit)
        return self

    def stop(self) -> None:
        """Stop the server at once and delete its directory; calling it again does nothing."""
        if self._directory is None or self._stopped:
            return
        self._stopped = True
        atexit.unregister(self._stop_at_exit)
        # A server that could not be stopped keeps its directory, so that
        # reap_orphans can find it again later.
        self._halt()
        shutil.rmtree(self._directory, ignore_errors=True)
        if self._directory.exists():
            raise errors.ServerError(
                errors.message(
                    f"the {self.kind} server stopped, but its directory {self._directory} "
                    "could not be deleted. Delete it by hand."
                )
            )

    def __enter__(self: _S) -> _S:
        if self._directory is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self._directory if self._directory is not None else "not started"
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {where} ({state})>"

    def _stop_at_exit(self) -> None:
        # A forked child inherits the handler but not the server.
        if os.getpid() != self._owner_pid:
            return
        try:
            self.stop()
        except errors.AlchemyError as exc:
            print(exc, file=sys.stderr)

    def _halt(self) -> None:
        """Stop the server process, if one of this directory is running; kill it if needed."""
        pid = self._live_pid()
        if pid is None:
            return
        try:
            self._shutdown(self._run_as())
        except errors.ServerError:
            patience = 0.5  # the shutdown request failed: kill without waiting long
        else:
            patience = _STOP_WAIT
        if processes.wait_gone(pid, patience):
            return
        _kill(pid)
        if not processes.wait_gone(pid, _STOP_WAIT):
            raise errors.ServerError(
                errors.message(
                    f"the {self.kind} server (pid {pid}) did not stop, even after SIGKILL. "
                    f"Stop it by hand, then delete {self.directory}."
                )
            )

    def _live_pid(self) -> int | None:
        """The server's process id when it is running and really serves this directory.

        A recorded process id may have been recycled by an unrelated process
        since; that process is never signalled.
        """
        pid = self._read_pid() or self._pid
        if pid is None or not processes.running(pid):
            return None
        command = processes.command_line(pid)
        if command is None:
            # Unverifiable: trust only a server this process started itself.
            return pid if self._pid == pid and self._owner_pid == os.getpid() else None
        return pid if str(self.directory) + os.sep in command else None

    # -- owner record ---------------------------------------------------------------------

    def _write_owner(self) -> None:
        record: dict[str, Any] = {
            "kind": self.kind,
            "owner": RunIdentity.current().to_dict(),
            "server_pid": self._pid,
            "server_process_start": processes.process_start(self._pid) if self._pid else "",
            "started_at": self._started_at,
        }
        text = json.dumps(record, indent=2, sort_keys=True) + "\n"
        files.write_atomically(self.owner_file, text)

    # -- users and directories ------------------------------------------------------------

    @classmethod
    def _run_as(cls) -> _RunAs:
        """Who runs the server: the current user, or :attr:`service_user` when that is root."""
        import pwd  # Unix only; imported here so that importing this module works anywhere

        uid = os.getuid()
        if os.geteuid() != 0:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = str(uid)
            return _RunAs(name=name, uid=os.geteuid(), gid=os.getegid(), switch=False)
        try:
            entry = pwd.getpwnam(cls.service_user)
        except KeyError:
            raise errors.ServerError(
                errors.message(
                    f"cannot start a throwaway {cls.kind} server: it refuses to run as root, "
                    f"and there is no '{cls.service_user}' user to run it as instead. Create "
                    f"an unprivileged user of that name (for example `useradd --system "
                    f"--user-group {cls.service_user}`), or run the tests as a user other "
                    "than root."
                )
            ) from None
        if entry.pw_uid == 0:
            raise errors.ServerError(
                errors.message(
                    f"cannot start a throwaway {cls.kind} server: the '{cls.service_user}' "
                    "user is root, and the server refuses to run as root. Give that user its "
                    "own uid, or run the tests as a user other than root."
                )
            )
        return _RunAs(name=cls.service_user, uid=entry.pw_uid, gid=entry.pw_gid, switch=True)

    def _prepare_root(self, run_as: _RunAs) -> Path:
        """Create the root if needed, and check that nobody else controls it."""
        root = Path(os.path.abspath(self.root)) if self.root is not None else default_root()
        _refuse_long_root(root)
        try:
            root.mkdir(mode=0o711 if run_as.switch else 0o700, parents=True, exist_ok=True)
            planted = self.root is None and root.is_symlink()
            root = root.resolve()
            info = root.stat()
        except OSError as exc:
            raise errors.ServerError(
                errors.message(
                    f"cannot create the directory {root} for throwaway servers: {exc}. Pass a "
                    "writable root, or set TMPDIR to a writable directory."
                )
            ) from exc
        if planted or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            raise errors.ServerError(
                errors.message(
                    f"{root} is not a directory owned by the current user, so it is not safe "
                    "for throwaway servers: someone else could read or replace their data. "
                    "Delete it, or pass another root."
                )
            )
        mode = stat.S_IMODE(info.st_mode)
        wanted = (mode & ~0o022) | (0o011 if run_as.switch else 0)
        if wanted != mode:
            root.chmod(wanted)
        _refuse_long_root(root)  # resolving may have made it longer
        if run_as.switch:
            _check_searchable(root, run_as)
        return root

    def _make_directory(self, root: Path, run_as: _RunAs) -> Path:
        for _ in range(100):
            directory = root / f"{self.prefix}-{os.getpid()}-{os.urandom(3).hex()}"
            try:
                directory.mkdir(mode=0o700)
            except FileExistsError:  # pragma: no cover - a collision of 24 random bits
                continue
            if run_as.switch:
                os.chown(directory, run_as.uid, run_as.gid)
            return directory
        raise errors.ServerError(  # pragma: no cover - needs 100 collisions of 24 random bits
            errors.message(f"could not create a server directory in {root}; clean it up.")
        )

    # -- orphans --------------------------------------------------------------------------

    @classmethod
    def _adopt(cls: type[_S], directory: Path, record: dict[str, Any] | None) -> _S:
        """An object for a server directory this process did not create, only to stop it."""
        server = cls()
        server._directory = directory
        pid = record.get("server_pid") if record else None
        server._pid = pid if isinstance(pid, int) else None
        server._owner_pid = -1
        return server


def _socket_path_too_long(root: Path) -> bool:
    """Whether a socket in a server directory under ``root`` might exceed the limit."""
    longest = root / f"abcdefgh-{2**22}-ffffff" / ".s.PGSQL.65535.lock"
    return len(os.fsencode(longest)) > SOCKET_PATH_LIMIT


def _refuse_long_root(root: Path) -> None:
    if _socket_path_too_long(root):
        raise errors.ServerError(
            errors.message(
                f"the server root {root} is too long: unix socket paths are limited to "
                f"about {SOCKET_PATH_LIMIT} bytes, and the server's socket lives in a "
                "directory below it. Pass a shorter root, such as one under /tmp."
            )
        )


def _check_searchable(root: Path, run_as: _RunAs) -> None:
    """Fail early when the server's user could not reach its directory under ``root``."""
    for directory in (root, *root.parents):
        info = directory.stat()
        if info.st_uid == run_as.uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid == run_as.gid:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            raise errors.ServerError(
                errors.message(
                    f"the server would run as user '{run_as.name}', which cannot enter "
                    f"{directory} (mode {stat.S_IMODE(info.st_mode):o}). Pass a root under a "
                    "directory every user may enter, such as /tmp."
                )
            )


# --- PostgreSQL ------------------------------------------------------------------------------

_POSTGRESQL_PROGRAMS = ("initdb", "pg_ctl", "postgres")
_POSTGRESQL_GLOBS = (
    "/usr/lib/postgresql/*/bin",
    "/usr/pgsql-*/bin",
    "/opt/homebrew/opt/postgresql@*/bin",
    "/usr/local/opt/postgresql@*/bin",
)
_POSTGRESQL_FIXED = ("/usr/local/pgsql/bin",)
_SOCKET_PORT = 5432


@dataclass(frozen=True)
class PostgreSQLBinaries:
    """The PostgreSQL server programs of one installation."""

    bindir: Path
    initdb: Path
    pg_ctl: Path
    postgres: Path

    @classmethod
    def in_directory(cls, directory: Path) -> PostgreSQLBinaries | None:
        """The programs in ``directory``, when all of them are there."""
        found = [directory / name for name in _POSTGRESQL_PROGRAMS]
        # os.path.isfile, unlike Path.is_file, is False for an unreadable directory.
        if all(os.path.isfile(path) and os.access(path, os.X_OK) for path in found):
            return cls(directory, *found)
        return None


def _version_key(path: Path) -> tuple[int, ...]:
    numbers = re.findall(r"\d+", str(path))
    return tuple(int(number) for number in numbers)


def _default_search_dirs() -> list[Path]:
    versioned: list[Path] = []
    for pattern in _POSTGRESQL_GLOBS:
        versioned.extend(Path("/").glob(pattern.lstrip("/")))
    versioned.sort(key=_version_key, reverse=True)
    return versioned + [Path(fixed) for fixed in _POSTGRESQL_FIXED]


def _pg_config_bindir() -> tuple[Path | None, str]:
    """The bindir reported by ``pg_config``, and a note of what was found for messages."""
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None, "pg_config is not on PATH"
    try:
        done = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{pg_config} failed: {exc}"
    if done.returncode != 0 or not done.stdout.strip():
        return None, f"{pg_config} --bindir failed"
    bindir = Path(done.stdout.strip())
    return bindir, f"{pg_config} --bindir is {bindir}"


def find_postgresql_binaries(search_dirs: Sequence[Path] | None = None) -> PostgreSQLBinaries:
    """Find ``initdb``, ``pg_ctl`` and ``postgres``, all three in one directory.

    Looked for, in order: the directories on ``PATH``; ``pg_config --bindir``;
    then ``search_dirs`` when given, else the usual installation directories
    (``/usr/lib/postgresql/<version>/bin`` and Homebrew's
    ``postgresql@<version>``, highest version first, then
    ``/usr/local/pgsql/bin``).
    """
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if entry and (found := PostgreSQLBinaries.in_directory(Path(entry))):
            return found
    bindir, note = _pg_config_bindir()
    if bindir is not None and (found := PostgreSQLBinaries.in_directory(bindir)):
        return found
    candidates = list(search_dirs) if search_dirs is not None else _default_search_dirs()
    for directory in candidates:
        if found := PostgreSQLBinaries.in_directory(directory):
            return found
    if search_dirs is not None:
        places = ", ".join(str(directory) for directory in search_dirs) or "(none)"
    else:
        places = ", ".join([*_POSTGRESQL_GLOBS, *_POSTGRESQL_FIXED])
    raise errors.ServerError(
        errors.message(
            "cannot start a throwaway PostgreSQL server: the server programs "
            f"{', '.join(_POSTGRESQL_PROGRAMS)} were not found together in one directory. "
            f"Looked on PATH, in pg_config's bindir ({note}) and in {places}. Install the "
            "PostgreSQL server packages (Debian/Ubuntu: `apt-get install postgresql`; "
            "Fedora: `dnf install postgresql-server`; macOS: `brew install postgresql`) or "
            "put their bin directory on PATH; or point `alchemy_url` at a running server "
            "instead of using `alchemy_server`."
        )
    )


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _server_environment() -> dict[str, str]:
    """The environment for server programs: ours, without libpq and server variables."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


class PostgreSQLServer(ThrowawayServer):
    """A throwaway PostgreSQL server, tuned for tests rather than durability.

    The cluster is created with ``initdb`` (superuser ``postgres``, trust
    authentication, UTF8 and the C locale) and started with ``pg_ctl`` with
    fsync, synchronous commit and full page writes off. It listens on a unix
    socket in its own directory; with ``port`` it also listens on 127.0.0.1
    (``port=0`` picks a free port).
    """

    kind = "postgresql"
    prefix = "pg"
    service_user = "postgres"

    superuser = "postgres"
    maintenance_database = "postgres"

    def __init__(
        self,
        *,
        root: Path | None = None,
        port: int | None = None,
        timeout: float = 60.0,
        search_dirs: Sequence[Path] | None = None,
    ) -> None:
        super().__init__(root=root, port=port, timeout=timeout)
        self.search_dirs = search_dirs
        self._binaries: PostgreSQLBinaries | None = None
        self._version = ""
        self._port = port or _SOCKET_PORT

    @property
    def binaries(self) -> PostgreSQLBinaries:
        if self._binaries is None:
            self._binaries = find_postgresql_binaries(self.search_dirs)
        return self._binaries

    @property
    def port(self) -> int | None:
        """The TCP port on 127.0.0.1 (known once started), or None when there is no TCP."""
        return self._port if self.requested_port is not None else None

    @property
    def url(self) -> URL:
        if not self.running:
            raise self._not_running()
        # The port names the socket file too; it is always given, so that a
        # PGPORT in the environment cannot send libpq to another socket name.
        return URL.create(
            "postgresql",
            username=self.superuser,
            database=self.maintenance_database,
            query={"host": str(self.socket_directory), "port": str(self._port)},
        )

    @property
    def version(self) -> str:
        if not self._version:
            self._version = self._read_version()
        return self._version

    def _preflight(self) -> None:
        self._version = self._read_version()

    # -- implementation -------------------------------------------------------------------

    def _run(
        self,
        command: list[str],
        run_as: _RunAs,
        timeout: float,
        what: str,
    ) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                command,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                check=False,
                cwd=self.directory,
                env=_server_environment(),
                user=run_as.uid if run_as.switch else None,
                group=run_as.gid if run_as.switch else None,
                extra_groups=[] if run_as.switch else None,
            )
        except subprocess.TimeoutExpired as exc:
            raise errors.ServerError(
                errors.message(
                    f"{what} did not finish within {timeout:.0f} seconds. Check that the "
                    "machine is not overloaded, or raise the server timeout."
                )
            ) from exc
        except OSError as exc:
            raise errors.ServerError(
                errors.message(f"{what} could not be run: {exc}. Check the PostgreSQL install.")
            ) from exc

    def _read_version(self) -> str:
        try:
            done = subprocess.run(
                [str(self.binaries.postgres), "--version"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise errors.ServerError(
                errors.message(
                    f"`{self.binaries.postgres} --version` failed: {exc}. Check the "
                    "PostgreSQL install."
                )
            ) from exc
        output = done.stdout.strip()
        match = re.search(r"\)\s*(\d+(?:\.\d+)*)", output) or re.search(r"(\d+(?:\.\d+)+)", output)
        return match.group(1) if match else output

    def _initdb(self, run_as: _RunAs) -> None:
        initdb = str(self.binaries.initdb)
        usage = self._run([initdb, "--help"], run_as, 30, "initdb --help").stdout
        command = [
            initdb,
            "-D",
            str(self.data_directory),
            "-U",
            self.superuser,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        ]
        if "--no-sync" in usage:
            command.append("--no-sync")
        elif "--nosync" in usage:
            command.append("--nosync")
        if "--no-instructions" in usage:
            command.append("--no-instructions")
        done = self._run(command, run_as, max(self.timeout, 1.0), "initdb")
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip().splitlines()[-20:]
            raise errors.ServerError(
                errors.message(
                    f"initdb failed (exit status {done.returncode}) while creating a "
                    f"throwaway PostgreSQL cluster in {self.data_directory}. Fix the cause "
                    "below, or point `alchemy_url` at a running server instead. Output:\n"
                    + "\n".join(output)
                )
            )

    def _settings(self, port: int) -> list[tuple[str, str]]:
        listen = "" if self.requested_port is None else "127.0.0.1"
        return [
            ("listen_addresses", listen),
            ("port", str(port)),
            ("unix_socket_directories", str(self.socket_directory)),
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
            ("max_connections", "200"),
        ]

    def _pg_ctl_start(self, run_as: _RunAs, port: int) -> subprocess.CompletedProcess[str]:
        # pg_ctl hands the options to a shell, so every value is quoted for one.
        options = " ".join(
            f"-c {name}={shlex.quote(value)}" for name, value in self._settings(port)
        )
        wait = max(1, int(self.timeout + 0.999))
        command = [
            str(self.binaries.pg_ctl),
            "start",
            "-w",
            "-t",
            str(wait),
            "-D",
            str(self.data_directory),
            "-l",
            str(self.log_file),
            "-o",
            options,
        ]
        return self._run(command, run_as, wait + 30, "pg_ctl start")

    def _launch(self, run_as: _RunAs) -> int:
        self._initdb(run_as)
        attempts = 5 if self.requested_port == 0 else 1
        attempt = 0
        while True:
            attempt += 1
            port = self.requested_port or _SOCKET_PORT
            if self.requested_port == 0:
                port = _free_tcp_port()
            done = self._pg_ctl_start(run_as, port)
            pid = self._read_pid()
            if done.returncode == 0 and pid is not None:
                self._port = port
                return pid
            log = _tail(self.log_file)
            if attempt < attempts and "already in use" in log:
                continue  # another process took the free port first
            log = log or (done.stdout + done.stderr).strip() or "(nothing was logged)"
            hint = (
                f"Port {port} is taken; pick another port, or pass port=0. "
                if "already in use" in log and self.requested_port
                else ""
            )
            raise errors.ServerError(
                errors.message(
                    f"the throwaway PostgreSQL server did not start (pg_ctl exit status "
                    f"{done.returncode}). {hint}Fix the cause in the end of its log below, "
                    "or point `alchemy_url` at a running server instead of using "
                    f"`alchemy_server`. {self.log_file}:\n{log}"
                )
            )

    def _shutdown(self, run_as: _RunAs) -> None:
        command = [
            str(self.binaries.pg_ctl),
            "stop",
            "-m",
            "immediate",
            "-w",
            "-t",
            str(int(_STOP_WAIT)),
            "-D",
            str(self.data_directory),
        ]
        done = self._run(command, run_as, _STOP_WAIT + 10, "pg_ctl stop")
        if done.returncode != 0:
            raise errors.ServerError(
                errors.message(
                    f"pg_ctl stop failed: {(done.stdout + done.stderr).strip()}. The server "
                    "is killed instead."
                )
            )

    def _read_pid(self) -> int | None:
        try:
            first = (self.data_directory / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first.strip())
        except (OSError, ValueError):
            return None


# --- registry and entry points ---------------------------------------------------------------

SERVERS: dict[str, type[ThrowawayServer]] = {server.kind: server for server in (PostgreSQLServer,)}
"""Every kind of throwaway server, by the name :func:`start_server` takes."""


def start_server(
    kind: str,
    *,
    root: Path | None = None,
    port: int | None = None,
    timeout: float = 60.0,
) -> ThrowawayServer:
    """Start a throwaway server of ``kind``; it stops by itself when the interpreter exits.

    ``root`` is where its directory goes (default: :func:`default_root`);
    ``port`` None means no TCP at all, 0 a free TCP port on 127.0.0.1, and any
    other number that port.
    """
    server_class = SERVERS.get(kind.lower())
    if server_class is None:
        raise errors.ServerError(
            errors.message(
                f"there is no throwaway server of kind {kind!r}. Use one of: "
                f"{', '.join(sorted(SERVERS))}."
            )
        )
    return server_class(root=root, port=port, timeout=timeout).start()


def _owner_is_dead(directory: Path, record: dict[str, Any] | None, now: float) -> bool:
    owner = RunIdentity.from_dict(record.get("owner")) if record else None
    if owner is None:
        try:
            changed = max(
                path.stat().st_mtime
                for path in (directory, directory / OWNER_FILE)
                if path.exists()
            )
        except (OSError, ValueError):
            return False
        return now - changed > ORPHAN_GRACE
    if owner.is_local():
        return not owner.is_alive()
    # The same machine booted since: nothing of that run survives. Another
    # machine sharing this directory: its processes cannot be seen from here.
    return owner.host == RunIdentity.current().host


def reap_orphans(root: Path | None = None) -> list[Path]:
    """Stop and delete the servers under ``root`` whose owning process is gone.

    A server is an orphan when the run recorded in its ``owner.json`` is no
    longer alive (its process exited or was killed), or when that record has
    been unreadable for more than :data:`ORPHAN_GRACE` seconds. Servers of live
    runs, including this one, are never touched; a process is only signalled
    after checking that it serves the orphaned directory. Returns the
    directories that were deleted.
    """
    # Resolved, because a server's command line names its directory resolved.
    root = (Path(root) if root is not None else default_root()).resolve()
    by_prefix = {server.prefix: server for server in SERVERS.values()}
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return []
    reaped: list[Path] = []
    now = time.time()
    for directory in entries:
        match = _DIRECTORY_NAME.match(directory.name)
        if match is None or directory.is_symlink() or not directory.is_dir():
            continue
        record = files.read_json(directory / OWNER_FILE)
        kind = record.get("kind") if record else None
        server_class = SERVERS.get(kind) if isinstance(kind, str) else None
        server_class = server_class or by_prefix.get(match["prefix"])
        if server_class is None or not _owner_is_dead(directory, record, now):
            continue
        orphan = server_class._adopt(directory, record)
        try:
            orphan.stop()
        except errors.ServerError:
            continue
        reaped.append(directory)
    return reaped
