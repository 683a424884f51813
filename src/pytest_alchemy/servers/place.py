"""Where a throwaway server lives, and as whom it runs.

One root directory per user holds the servers' directories; its path must leave
room for the unix socket a server puts in its directory, and the server's user
must be able to reach it. As root, the servers run as an unprivileged service
user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import errors

SOCKET_PATH_LIMIT = 103
"""Longest unix socket path, in bytes, that works on every supported system."""


def default_root_for(socket_name: str) -> Path:
    """Where throwaway servers live unless told otherwise: one directory per user.

    It is in the temporary directory, or in /tmp when the temporary directory's
    path is too long for a socket named ``socket_name`` in a server directory
    below it.
    """
    name = f"pytest-alchemy-{os.getuid()}"
    root = Path(tempfile.gettempdir()) / name
    return Path("/tmp") / name if _socket_path_too_long(root, socket_name) else root


@dataclass(frozen=True)
class _RunAs:
    """The operating-system user the server processes run as."""

    name: str
    uid: int
    gid: int
    switch: bool
    """True when this is not the current user (the current user is root)."""


def _socket_path_too_long(root: Path, socket_name: str) -> bool:
    """Whether the socket ``socket_name`` in a server directory under ``root`` might be too long."""
    longest = root / f"abcdefgh-{2**22}-ffffff" / socket_name
    return len(os.fsencode(longest)) > SOCKET_PATH_LIMIT


def _refuse_long_root(root: Path, socket_name: str) -> None:
    if _socket_path_too_long(root, socket_name):
        raise errors.ServerError(
            errors.message(
                f"the server root {root} is too long: unix socket paths are limited to "
                f"about {SOCKET_PATH_LIMIT} bytes, and the server's socket lives in a "
                "directory below it. Pass a shorter root, such as one under /tmp."
            )
        )


def _unsearchable(path: Path, run_as: _RunAs) -> Path | None:
    """The first of ``path`` and its parents that the server's user may not enter, if any."""
    for directory in (path, *path.parents):
        info = directory.stat()
        if info.st_uid == run_as.uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid == run_as.gid:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return directory
    return None


def _mode(path: Path) -> str:
    return f"{stat.S_IMODE(path.stat().st_mode):o}"


def _check_searchable(root: Path, run_as: _RunAs) -> None:
    """Fail early when the server's user could not reach its directory under ``root``."""
    directory = _unsearchable(root, run_as)
    if directory is not None:
        raise errors.ServerError(
            errors.message(
                f"the server would run as user '{run_as.name}', which cannot enter "
                f"{directory} (mode {_mode(directory)}). Pass a root under a "
                "directory every user may enter, such as /tmp."
            )
        )
