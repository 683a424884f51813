"""Where a throwaway server keeps data it throws away: in RAM when the machine has room.

Every test database the plugin creates, clones or drops is files copied or
deleted in the server's data directory; on a slow disk that costs tens to
hundreds of milliseconds each, in RAM a few. So the data directory of a server
whose data is thrown away lives on a memory file system (tmpfs) when one with
room is there, and on disk beside the server's other files when not. Data kept
for the next run (``reuse_db``) is always on disk: it must outlive a reboot.

The environment variable :data:`RAM_ENV` chooses:

* unset, empty or ``auto``: in ``/dev/shm/pytest-alchemy-<uid>`` when
  ``/dev/shm`` is a memory file system with at least :data:`RAM_MIN_FREE`
  bytes free (Docker's default ``/dev/shm`` of 64 MiB is not enough), on disk
  otherwise;
* ``0``, ``off``, ``no`` or ``false``: on disk;
* ``1``, ``on``, ``yes`` or ``true``: in ``/dev/shm`` as with ``auto``, and
  the server does not start when that cannot be;
* an absolute path: in that directory, whatever its file system and free space.

Layout of one server's directory in RAM, named like its server directory::

    <RAM root>/<prefix>-<pid>-<random>/   owned by the server's user, mode 0700
        data/                             the data directory; <server directory>/data links here
        server.json                       names the server directory and the run that owns it

The record is written before anything else is put there; a directory in RAM
is deleted only when its record names the server being deleted, or names a
server directory that is gone and a run that is over.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import errors, files
from ..runs import RunIdentity
from .place import _mode, _RunAs, _unsearchable

RAM_ENV = "ALCHEMY_SERVER_RAM"
"""The environment variable that says where a throwaway server's data goes."""

RAM_MIN_FREE = 1 << 30
"""Bytes a memory file system must have free to be chosen by itself for a server's data."""

SHARED_MEMORY = Path("/dev/shm")
"""The memory file system looked for when nothing else is said."""

RECORD_FILE = "server.json"
"""The record in a server's directory in RAM of the server directory it belongs to."""

MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
"""File systems that keep their files in RAM."""

_OFF = frozenset({"0", "off", "no", "false"})
_ON = frozenset({"1", "on", "yes", "true"})
_AUTO = frozenset({"", "auto"})


@dataclass(frozen=True)
class RamSetting:
    """What :data:`RAM_ENV` asks for."""

    mode: str
    """``auto``, ``off``, ``on`` or ``path``."""
    path: Path | None = None
    """With ``path``: the directory to keep the data in."""

    @property
    def text(self) -> str:
        """The setting as it would be written in the environment."""
        return f"{RAM_ENV}={self.path if self.path is not None else self.mode}"


def setting(environ: Mapping[str, str] | None = None) -> RamSetting:
    """What ``environ`` (default: this process's environment) asks of :data:`RAM_ENV`."""
    raw = (os.environ if environ is None else environ).get(RAM_ENV, "")
    value = raw.strip()
    if value.lower() in _AUTO:
        return RamSetting("auto")
    if value.lower() in _OFF:
        return RamSetting("off")
    if value.lower() in _ON:
        return RamSetting("on")
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise errors.ServerError(
            errors.message(
                f"{RAM_ENV}={raw!r} is neither auto, off, on nor an absolute path. Set it to "
                "off to keep the throwaway server's data on disk, to a directory (such as "
                "/dev/shm) to keep it there, or unset it to keep it in RAM when there is room."
            )
        )
    return RamSetting("path", path)


def default_root() -> Path:
    """The directory in shared memory that holds this user's servers' data."""
    return SHARED_MEMORY / f"pytest-alchemy-{os.getuid()}"


def roots(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Every directory that may hold the data of this user's servers, for cleaning up."""
    found = [default_root()]
    try:
        chosen = setting(environ)
    except errors.ServerError:
        return found
    if chosen.path is not None and chosen.path not in found:
        found.append(chosen.path)
    return found


# --- file systems ----------------------------------------------------------------------------


def _unescape(field: str) -> str:
    """A path as the kernel writes it in /proc/mounts (a space is ``\\040``), decoded."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match[1], 8)), field)


def filesystem_type(path: Path, mounts: Path = Path("/proc/mounts")) -> str | None:
    """The type of the file system ``path`` is on, such as ``tmpfs``; None when unknown."""
    try:
        target = os.path.realpath(path)
        lines = mounts.read_text().splitlines()
    except OSError:
        return None
    best: tuple[int, str] | None = None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = _unescape(fields[1])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        # The last of several mounts on one point is the one that is seen.
        if inside and (best is None or len(point) >= best[0]):
            best = (len(point), fields[2])
    return best[1] if best is not None else None


def in_memory(path: Path) -> bool:
    """Whether ``path`` is on a file system that keeps its files in RAM."""
    return filesystem_type(path) in MEMORY_FILESYSTEMS


def refusal(where: Path, kind: str | None, free: int, size: int) -> str | None:
    """Why ``where`` (of file system ``kind``, ``size`` bytes, ``free`` of them free) is not
    used by itself for a server's data; None when it is.

    A file system without a size (a ramfs, or a tmpfs mounted with ``size=0``)
    grows until RAM runs out, so it is taken.
    """
    if kind not in MEMORY_FILESYSTEMS:
        return f"{where} is not a memory file system ({kind or 'unknown'})"
    if size and free < RAM_MIN_FREE:
        return (
            f"{where} has {free / 2**20:.0f} MiB free, less than the "
            f"{RAM_MIN_FREE / 2**30:.0f} GiB wanted"
        )
    return None


def shared_memory_refusal() -> str | None:
    """Why :data:`SHARED_MEMORY` is not used for a server's data; None when it is."""
    if not SHARED_MEMORY.is_dir():
        return f"there is no {SHARED_MEMORY}"
    if not os.access(SHARED_MEMORY, os.W_OK | os.X_OK):  # pragma: no cover - not as root
        return f"{SHARED_MEMORY} is not writable"
    try:
        info = os.statvfs(SHARED_MEMORY)
    except OSError as exc:  # pragma: no cover - a directory that cannot be examined
        return f"{SHARED_MEMORY} cannot be examined: {exc}"
    kind = filesystem_type(SHARED_MEMORY)
    return refusal(SHARED_MEMORY, kind, info.f_bavail * info.f_frsize, info.f_blocks)


# --- the directories -------------------------------------------------------------------------


def prepare_root(root: Path, run_as: _RunAs, *, own: bool) -> Path:
    """Create ``root`` if needed and return it resolved; :class:`OSError` when it cannot hold data.

    ``own``: the root is this user's directory in shared memory, which others
    could have made first: it must be a real directory owned by the current
    user, and is closed to others. A root named by the user is taken as it is.
    """
    if own:
        root.mkdir(mode=0o711 if run_as.switch else 0o700, exist_ok=True)
        info = os.lstat(root)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            raise OSError(f"{root} is not a directory owned by the current user")
        wanted = 0o711 if run_as.switch else 0o700
        if stat.S_IMODE(info.st_mode) != wanted:
            root.chmod(wanted)
    else:
        root.mkdir(mode=0o711 if run_as.switch else 0o700, parents=True, exist_ok=True)
    resolved = root.resolve()
    if run_as.switch:
        blocked = _unsearchable(resolved, run_as)
        if blocked is not None:
            raise OSError(
                f"the server's user '{run_as.name}' cannot enter {blocked} (mode {_mode(blocked)})"
            )
    return resolved


def create(root: Path, server_directory: Path, kind: str, run_as: _RunAs) -> Path:
    """Create the directory in RAM of the server in ``server_directory``, with its record.

    Its ``data`` directory is empty and, like it, owned by the server's user.
    """
    home = root / server_directory.name
    home.mkdir(mode=0o700)
    made = {
        "kind": kind,
        "server_directory": str(server_directory),
        "owner": RunIdentity.current().to_dict(),
    }
    try:
        files.write_atomically(home / RECORD_FILE, json.dumps(made, indent=2) + "\n")
    except BaseException:  # pragma: no cover - a full file system
        home.rmdir()
        raise
    try:
        data = home / "data"
        data.mkdir(mode=0o700)
        if run_as.switch:
            os.chown(data, run_as.uid, run_as.gid)
            os.chown(home, run_as.uid, run_as.gid)
    except BaseException:
        remove(home, server_directory)
        raise
    return home


def record(home: Path) -> dict[str, Any] | None:
    """The record in the directory in RAM ``home``; None when it is not one of ours."""
    try:
        info = os.lstat(home)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode):
        return None
    found = files.read_json(home / RECORD_FILE)
    if found is None or not isinstance(found.get("server_directory"), str):
        return None
    return found


def belongs_to(home: Path, server_directory: Path) -> bool:
    """Whether ``home`` is the directory in RAM of the server in ``server_directory``."""
    found = record(home)
    return found is not None and found["server_directory"] == str(server_directory)


def remove(home: Path, server_directory: Path) -> None:
    """Delete ``home`` when it is the directory in RAM of the server in ``server_directory``.

    A directory that is not (or no longer) ours is left alone; one that could
    not be deleted raises :class:`OSError`.
    """
    if not belongs_to(home, server_directory):
        return
    shutil.rmtree(home, ignore_errors=True)
    if home.exists():
        raise OSError(f"{home} could not be deleted")
