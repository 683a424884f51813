"""What every throwaway database server shares: its directory, its owner, how it is stopped.

A throwaway server lives in its own small directory (data, socket, log and an
owner record) under a per-user root in the temporary directory; when the
machine has room, its data directory there is a link to one in RAM
(:mod:`.ram`). This module holds what every kind of server shares, and keeps
these promises:

* **It never leaves a server running after the run.** :meth:`ThrowawayServer.stop`
  is registered with :mod:`atexit` as soon as the server is up, so a normal
  interpreter exit, including one caused by Ctrl-C, stops the server and deletes
  its directory and its data in RAM. A run killed outright (SIGKILL, a crash,
  or a signal Python has no handler for, such as SIGTERM) cannot clean up
  after itself; its server is found by the owner record and stopped by
  ``reap_orphans`` in the next run, which never touches the servers of runs
  that are still alive; it also deletes data in RAM whose server directory is
  gone and whose run is over.
* **It works as root.** Database servers refuse to run as root, which is what
  CI containers usually are; the server is then run as the unprivileged user
  its kind names (:attr:`ThrowawayServer.service_user`), and its directories
  are handed to that user.
* **Kept data is never deleted by the life cycle.** A server given a folder to
  keep its data in (``reuse_db``, see :mod:`.kept`) starts on the data kept
  there by the last run and leaves it there when it stops (the server process
  is still stopped; the directory with its socket and log is still deleted).
  Reaping a dead run's server stops its process and leaves its kept data. Kept
  data is never put in RAM.
* **It opens no TCP port unless asked.** By default the server listens only on
  a unix socket inside its own directory, so it cannot collide with another
  server on the machine or be reached from the network.

The failure this prevents is the one of hand-managed test servers: a forgotten
server process that keeps running (and keeps its port) long after the tests, or
a second run that connects to the first run's server and destroys its data.

Each kind of server is one subclass of :class:`ThrowawayServer` in a module of
its own beside this one, listed in the package's ``SERVERS``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import stat
import sys
import time
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .. import errors, files, processes
from ..runs import RunIdentity
from . import kept, ram
from .place import _check_searchable, _mode, _refuse_long_root, _RunAs, _unsearchable

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

ORPHAN_GRACE = 600.0
"""Seconds after which a server directory without a readable owner record counts as abandoned."""

STOP_WAIT = 10.0
"""Seconds a server is given to stop, and then to die once killed."""

OWNER_FILE = "owner.json"
LOG_FILE = "server.log"
DATA_DIR = "data"

DIRECTORY_NAME = re.compile(r"^(?P<prefix>[a-z]+)-(?P<pid>\d+)-(?P<tag>[0-9a-f]{6})$")
"""The name of a server directory: ``<prefix>-<pid of its owner>-<random>``."""

_S = TypeVar("_S", bound="ThrowawayServer")


# --- stopping a server by force ------------------------------------------------------------


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


def _names(command: str, path: Path) -> bool:
    """Whether the command line ``command`` names ``path``, or something in it, as a whole."""
    name = str(path)
    return any(
        f" {name}{end}" in f" {command} " or f"={name}{end}" in f" {command} "
        for end in (os.sep, " ")
    )


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
    user it runs as when the current user is root (:attr:`service_user`) and
    the longest name of its socket files (:attr:`socket_name_max`), and
    implement :meth:`_preflight`, :meth:`_launch`, :meth:`_shutdown`,
    :meth:`_read_pid`, :attr:`url` and :attr:`version`; they must be
    constructible with keyword arguments only, all of them optional. Everything
    else (the directory layout, the owner record, running as another user,
    stopping at exit, the kill fallback and reaping) is shared.

    Layout of one server, under ``root``::

        <prefix>-<pid>-<random>/   the server directory, owned by the server's user
            data/                  the data directory, or a link to it in RAM (:mod:`.ram`)
            server.log             everything the server wrote
            owner.json             who owns the server, and its process id
            (sockets)              the unix sockets
    """

    kind: str = ""
    """The name ``start_server`` knows this server by."""
    prefix: str = ""
    """The start of the server directory's name; lowercase letters only."""
    service_user: str = ""
    """The operating-system user the server runs as when the current user is root."""
    socket_name_max: ClassVar[str]
    """The longest name among the socket and the files beside it, such as a lock file.

    A root is refused when this name, in a server directory below it, would
    make a path longer than :data:`SOCKET_PATH_LIMIT`.
    """

    def __init__(
        self,
        *,
        root: Path | None = None,
        port: int | None = None,
        timeout: float = 60.0,
        keep: Path | None = None,
        recreate: bool = False,
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
        self.keep = keep
        """The folder to keep the data in between runs (None: deleted with the server)."""
        self.recreate = recreate
        """With ``keep``: create the kept data anew instead of reusing it."""
        self.keep_note = ""
        """With ``keep``: what became of the kept data, or why this server does not keep it."""
        self._kept: Path | None = None
        self._lock: kept.KeptLock | None = None
        self._initialize = True
        self._ram: Path | None = None
        self._orphaned_data: Path | None = None
        self.data_note = ""
        """Where the data directory is once started, such as ``data in RAM (/dev/shm/...)``,
        and why data that is thrown away is on disk when it is."""

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

    pid_file: ClassVar[str]
    """The file in the data directory in which the running server records its process id."""

    @property
    def major(self) -> str:
        """The major version: servers of one major version can share a data directory."""
        return self.version.split(".")[0]

    def _data_version(self, data: Path) -> str | None:
        """The major version that made the data directory ``data``; None when unknown."""
        return None

    # -- layout ---------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        """The server directory; it exists from :meth:`start` until :meth:`stop`."""
        if self._directory is None:
            raise self._not_running()
        return self._directory

    @property
    def data_directory(self) -> Path:
        """The data directory, as the server is told it (in RAM, a link to it)."""
        if self._kept is not None:
            return self._kept / DATA_DIR
        if self._orphaned_data is not None:
            return self._orphaned_data
        return self.directory / DATA_DIR

    @property
    def ram_directory(self) -> Path | None:
        """The directory in RAM that holds the data directory; None when it has none.

        Data in a server directory that is itself in RAM has none either
        (:attr:`data_note` says where the data is).
        """
        return self._ram

    @property
    def kept(self) -> Path | None:
        """The directory whose data this server keeps for the next run; None when it has none."""
        return self._kept

    def kept_home(self) -> Path | None:
        """The kept directory this server would use: one per kind and major version."""
        if self.keep is None:
            return None
        # Resolved, like the root: the server's command line names it resolved.
        return Path(self.keep).resolve() / f"{self.kind}-{self.major}"

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
        in_ram = ram.setting()
        run_as = self._run_as()
        root = self._prepare_root(run_as)
        self._directory = self._make_directory(root, run_as)
        self._owner_pid = os.getpid()
        self._started_at = time.time()
        try:
            if self.keep is not None:
                self._claim_kept(run_as)
            if self._kept is None:
                self._place_data(run_as, in_ram)
            else:
                self.data_note = f"data kept in {self._kept}"
            self._write_owner()
            self._pid = self._launch(run_as)
            self._write_owner()
            if self._kept is not None and self._initialize:
                kept.record_made(self._kept, self.kind, self.major)
        except BaseException:
            self._stopped = True
            with contextlib.suppress(errors.ServerError):
                self._halt()
                self._remove_ram()
                shutil.rmtree(self._directory, ignore_errors=True)
            self._release_kept()
            raise
        atexit.register(self._stop_at_exit)
        return self

    def stop(self) -> None:
        """Stop the server at once and delete its directory (and its data in RAM);
        calling it again does nothing."""
        if self._directory is None or self._stopped:
            return
        self._stopped = True
        atexit.unregister(self._stop_at_exit)
        # A server that could not be stopped keeps its directory (and its kept
        # data its lock, until this process ends), so that reap_orphans can find it.
        self._halt()
        left_in_ram = self._remove_ram()
        shutil.rmtree(self._directory, ignore_errors=True)
        self._release_kept()
        if self._directory.exists():
            raise errors.ServerError(
                errors.message(
                    f"the {self.kind} server stopped, but its directory {self._directory} "
                    "could not be deleted. Delete it by hand."
                )
            )
        if left_in_ram is not None:
            raise errors.ServerError(
                errors.message(
                    f"the {self.kind} server stopped, but its data directory in RAM "
                    f"{left_in_ram} could not be deleted. Delete it by hand."
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
            patience = STOP_WAIT
        if processes.wait_gone(pid, patience):
            return
        _kill(pid)
        if not processes.wait_gone(pid, STOP_WAIT):
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
        # The server directory holds the data (in RAM, its link), or (kept data) the socket.
        return pid if _names(command, self.directory) else None

    # -- data in RAM ----------------------------------------------------------------------

    def _place_data(self, run_as: _RunAs, chosen: ram.RamSetting) -> None:
        """Put the data directory, which is thrown away, in RAM when ``chosen`` lets it.

        The data directory in the server directory is then a link to it, so
        that the server is told, and its command line names, the same path as
        on disk. Says where the data is in :attr:`data_note`.
        """
        data = self.directory / DATA_DIR
        if chosen.mode == "off":
            self.data_note = f"data on disk ({chosen.text})"
            return
        why: str | None = None
        if chosen.path is None:
            if ram.in_memory(self.directory):
                self.data_note = f"data in RAM ({data})"
                return
            root = ram.default_root()
            why = ram.shared_memory_refusal()
        else:
            root = chosen.path
        home: Path | None = None
        if why is None:
            try:
                resolved = ram.prepare_root(root, run_as, own=chosen.path is None)
                home = ram.create(resolved, self.directory, self.kind, run_as)
                data.symlink_to(home / DATA_DIR, target_is_directory=True)
            except OSError as exc:
                if home is not None:
                    with contextlib.suppress(OSError):
                        ram.remove(home, self.directory)
                why = f"{root} cannot hold it: {exc}"
        if why is None and home is not None:
            self._ram = home
            self.data_note = f"data in RAM ({home})" if ram.in_memory(home) else f"data in {home}"
            if self.keep is not None:
                self.keep_note += f"; {self.data_note}"
            return
        if chosen.mode == "auto":
            self.data_note = f"data on disk: {why}"
            return
        where = "RAM" if chosen.path is None else str(chosen.path)
        raise errors.ServerError(
            errors.message(
                f"{chosen.text} asks for the throwaway {self.kind} server's data in {where}, "
                f"but {why}. Unset {ram.RAM_ENV} (or set it to auto) to keep the data on disk "
                "when it cannot be in RAM, or set it to off."
            )
        )

    def _remove_ram(self) -> Path | None:
        """Delete the server's directory in RAM; the directory when it could not be deleted."""
        if self._ram is None or self._directory is None:
            return None
        try:
            ram.remove(self._ram, self._directory)
        except OSError:
            return self._ram
        return None

    # -- kept data ------------------------------------------------------------------------

    def kept_obstacle(self, run_as: _RunAs | None = None) -> str | None:
        """Why this server could not keep its data for the next run; None when it can.

        Reads only (the report header asks before anything starts): the
        server's user must be able to enter the folder, no other live run may
        hold the kept directory, and data kept there must be of this major version.
        """
        home = self.kept_home()
        if home is None:
            return "no folder to keep it in"
        run_as = run_as or self._run_as()
        existing = next(path for path in (home, *home.parents) if path.exists())
        if run_as.switch:
            blocked = _unsearchable(existing, run_as)
            if blocked is not None:
                return (
                    f"the server runs as user '{run_as.name}' (the tests run as root), which "
                    f"cannot enter {blocked} (mode {_mode(blocked)}); set pytest's cache_dir "
                    "to a directory every user may enter, or run the tests as another user"
                )
        other = kept.holder(home)
        if other is not None:
            return f"another pytest run is using {home}: {other.describe()}"
        if self.recreate:
            return None
        found = self._data_version(home / DATA_DIR)
        if found is not None and found != self.major:
            return (
                f"the data in {home} was made by {self.kind} {found}, and this server is "
                f"{self.major}; run once with alchemy_create_db to make it anew, or delete it"
            )
        return None

    def _claim_kept(self, run_as: _RunAs) -> None:
        """Take the kept directory for this run, or say in :attr:`keep_note` why not."""
        home = self.kept_home()
        assert home is not None
        try:
            home.mkdir(mode=0o711 if run_as.switch else 0o700, parents=True, exist_ok=True)
        except OSError as exc:
            self.keep_note = f"reuse is off: cannot create {home}: {exc}"
            return
        obstacle = self.kept_obstacle(run_as)
        lock = kept.KeptLock(home)
        if obstacle is None and not lock.acquire():
            obstacle = f"another pytest run is using {home}"
        if obstacle is not None:
            self.keep_note = f"reuse is off: {obstacle}"
            return
        self._lock = lock
        try:
            self._take_kept(home, run_as)
        except BaseException:
            self._release_kept()
            raise

    def _take_kept(self, home: Path, run_as: _RunAs) -> None:
        """With the lock held: make the kept data ready to start on, and say what was done."""
        data = home / DATA_DIR
        made = data.is_dir() and any(data.iterdir())
        where = f"data in {home}"
        if made and (self.recreate or kept.made_by(home) is None):
            why = "alchemy_create_db" if self.recreate else "the run that made it did not finish"
            shutil.rmtree(data)
            with contextlib.suppress(FileNotFoundError):
                (home / kept.KEPT_FILE).unlink()
            self.keep_note = f"{where} made anew ({why})"
        elif made:
            self.keep_note = f"{where} reused"
            self._initialize = False
        else:
            self.keep_note = f"{where} made"
        self._kept = home
        if self._initialize:
            data.mkdir(mode=0o700, exist_ok=True)
            if run_as.switch:
                os.chown(data, run_as.uid, run_as.gid)
        else:
            self._clear_leftover(run_as)

    def _clear_leftover(self, run_as: _RunAs) -> None:
        """Stop a server a dead run left on the kept data, or remove its stale pid file.

        Called with the lock held, so no live run serves this data: a process
        recorded in the pid file that serves it is a leftover (its own
        directory already gone, so reaping could not find it). A recorded
        process that serves something else is a recycled pid: never signalled.
        """
        pid_file = self.data_directory / self.pid_file
        pid = self._read_pid()
        if pid is None:
            return
        if processes.running(pid):
            command = processes.command_line(pid)
            if command is None:
                return  # unverifiable: leave it to the server, which refuses clearly
            if _names(command, self.data_directory):
                with contextlib.suppress(errors.ServerError):
                    self._shutdown(run_as)
                if not processes.wait_gone(pid, STOP_WAIT):
                    _kill(pid)
                    processes.wait_gone(pid, STOP_WAIT)
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()

    def _release_kept(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- owner record ---------------------------------------------------------------------

    def _write_owner(self) -> None:
        record: dict[str, Any] = {
            "kind": self.kind,
            "owner": RunIdentity.current().to_dict(),
            "server_pid": self._pid,
            "server_process_start": processes.process_start(self._pid) if self._pid else "",
            "started_at": self._started_at,
            "kept": str(self._kept) if self._kept is not None else None,
            "ram": str(self._ram) if self._ram is not None else None,
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
        if self.root is not None:
            root = Path(os.path.abspath(self.root))
        else:
            # The package's default root, not one for this kind alone: every kind
            # shares it, so that reap_orphans finds the servers of all of them.
            from . import default_root

            root = default_root()
        _refuse_long_root(root, self.socket_name_max)
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
        _refuse_long_root(root, self.socket_name_max)  # resolving may have made it longer
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
        home = record.get("kept") if record else None
        server._kept = Path(home) if isinstance(home, str) and home else None
        place = record.get("ram") if record else None
        link = directory / DATA_DIR
        if isinstance(place, str) and place:
            server._ram = Path(place)
        elif link.is_symlink():
            # A run killed before it wrote its record: the link says where the data is.
            with contextlib.suppress(OSError):
                server._ram = (directory / os.readlink(link)).parent
        return server

    @classmethod
    def _adopt_data(cls: type[_S], home: Path, directory: Path) -> _S:
        """An object for data in RAM whose server directory is gone, only to stop and delete it.

        A server still running on that data is known by its command line,
        which names the server ``directory`` (gone or not).
        """
        server = cls._adopt(directory, None)
        server._ram = home
        server._orphaned_data = home / DATA_DIR
        return server
