"""PostgreSQL as a throwaway server: found among the installed programs, tuned for tests.

This module keeps two promises of its own, beside those of
:mod:`pytest_alchemy.servers.base`:

* **The programs are found where installations put them.** ``initdb``,
  ``pg_ctl`` and ``postgres`` are looked for together in one directory: on
  ``PATH``, in ``pg_config --bindir``, then in the usual installation
  directories, highest version first; when they are not found, the error says
  where it looked and how to install them.
* **The server is fast and shut off from its surroundings.** The cluster uses
  trust authentication, UTF8 and the C locale, with fsync, synchronous commit
  and full page writes off; libpq and server variables (``PG*``) of the
  environment do not reach the server programs, and the URL always names the
  socket's port, so that a ``PGPORT`` cannot send a client elsewhere.

The failure this prevents is a test run that fails, or silently uses another
server, because of where PostgreSQL happens to be installed or what the
developer's shell has set.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import errors
from .base import STOP_WAIT, ThrowawayServer, _tail
from .place import _RunAs

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = ["PostgreSQLBinaries", "PostgreSQLServer", "find_postgresql_binaries"]

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
    socket_name_max = ".s.PGSQL.65535.lock"
    """The lock file beside the socket, at the longest port number."""

    pid_file = "postmaster.pid"

    superuser = "postgres"
    maintenance_database = "postgres"

    def __init__(
        self,
        *,
        root: Path | None = None,
        port: int | None = None,
        timeout: float = 60.0,
        keep: Path | None = None,
        recreate: bool = False,
        search_dirs: Sequence[Path] | None = None,
    ) -> None:
        super().__init__(root=root, port=port, timeout=timeout, keep=keep, recreate=recreate)
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
        from sqlalchemy.engine import URL

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

    @property
    def major(self) -> str:
        # Before 10, the major version had two parts (9.6).
        parts = self.version.split(".")
        return ".".join(parts[:2]) if parts[0].isdigit() and int(parts[0]) < 10 else parts[0]

    def _data_version(self, data: Path) -> str | None:
        try:
            return (data / "PG_VERSION").read_text().strip() or None
        except OSError:
            return None

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
        if self._initialize:
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
            if self.kept is not None and not self._initialize:
                hint += (
                    f"It was started on the data kept in {self.kept} by an earlier run; if "
                    "that data is damaged, run once with alchemy_create_db to make it anew. "
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
        # Kept data is shut down cleanly: with synchronous_commit off, an immediate
        # stop may lose the last commits (such as the test database's record).
        command = [
            str(self.binaries.pg_ctl),
            "stop",
            "-m",
            "fast" if self.kept is not None else "immediate",
            "-w",
            "-t",
            str(int(STOP_WAIT)),
            "-D",
            str(self.data_directory),
        ]
        done = self._run(command, run_as, STOP_WAIT + 10, "pg_ctl stop")
        if done.returncode != 0:
            raise errors.ServerError(
                errors.message(
                    f"pg_ctl stop failed: {(done.stdout + done.stderr).strip()}. The server "
                    "is killed instead."
                )
            )

    def _read_pid(self) -> int | None:
        try:
            first = (self.data_directory / self.pid_file).read_text().split("\n", 1)[0]
            return int(first.strip())
        except (OSError, ValueError):
            return None
