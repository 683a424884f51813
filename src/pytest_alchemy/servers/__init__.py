"""Throwaway database servers: started from the installed binaries for one test run, then deleted.

A server may instead keep its data for the next run in a folder it is given
(``reuse_db``: :mod:`.kept`); it is still stopped at the end of every run.

Every kind of server is one subclass of :class:`ThrowawayServer` in a module of
its own (:mod:`.postgresql`), listed once in :data:`SERVERS`; :func:`start_server`
starts one by name, and :func:`reap_orphans` stops and deletes those of any kind
that dead runs left behind. The promises every server keeps (never outliving
the run, working as root, no TCP unless asked) are :mod:`.base`'s.

All kinds share one root (:func:`default_root`), chosen so that the longest
socket path of every kind fits below it; that is how one reaping finds them all.
The data that is thrown away is kept in RAM when there is room (:mod:`.ram`,
``ALCHEMY_SERVER_RAM``).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .. import errors, files, processes
from ..runs import RunIdentity
from . import ram
from .base import DIRECTORY_NAME, ORPHAN_GRACE, OWNER_FILE, ThrowawayServer
from .base import _tail as _tail
from .place import default_root_for
from .postgresql import PostgreSQLBinaries, PostgreSQLServer, find_postgresql_binaries
from .postgresql import _default_search_dirs as _default_search_dirs
from .postgresql import _version_key as _version_key

__all__ = [
    "SERVERS",
    "PostgreSQLBinaries",
    "PostgreSQLServer",
    "ThrowawayServer",
    "default_root",
    "find_postgresql_binaries",
    "kept_plan",
    "reap_orphans",
    "start_server",
]

SERVERS: Mapping[str, type[ThrowawayServer]] = MappingProxyType(
    {server.kind: server for server in (PostgreSQLServer,)}
)
"""Every kind of throwaway server, by the name :func:`start_server` takes."""

# Earlier names of the process functions, still importable from here.
_process_running = processes.running
_command_line = processes.command_line
_wait_gone = processes.wait_gone


def default_root() -> Path:
    """Where throwaway servers live unless told otherwise: one directory per user.

    It is in the temporary directory, or in /tmp when the temporary directory's
    path is too long for the unix sockets below it (of every kind in :data:`SERVERS`).
    """
    longest = max((server.socket_name_max for server in SERVERS.values()), key=len)
    return default_root_for(longest)


def start_server(
    kind: str,
    *,
    root: Path | None = None,
    port: int | None = None,
    timeout: float = 60.0,
    keep: Path | None = None,
    recreate: bool = False,
) -> ThrowawayServer:
    """Start a throwaway server of ``kind``; it stops by itself when the interpreter exits.

    ``root`` is where its directory goes (default: :func:`default_root`);
    ``port`` None means no TCP at all, 0 a free TCP port on 127.0.0.1, and any
    other number that port. With ``keep``, its data is kept in that folder for
    the next run, and data kept there by an earlier run is used (``recreate``:
    made anew); when that cannot be, the server's data is deleted with it as
    usual, and its ``keep_note`` says why.
    """
    server_class = _server_class(kind)
    return server_class(root=root, port=port, timeout=timeout, keep=keep, recreate=recreate).start()


def kept_plan(kind: str, keep: Path, *, recreate: bool = False) -> tuple[Path | None, str | None]:
    """Where a server of ``kind`` would keep its data in ``keep``, and why it could not.

    Starts nothing and takes no lock; (None, None) when that cannot be told
    without starting (the server programs are missing, for example).
    """
    server = _server_class(kind)(keep=keep, recreate=recreate)
    try:
        server._preflight()
        return server.kept_home(), server.kept_obstacle()
    except (errors.ServerError, OSError):
        return None, None


def _server_class(kind: str) -> type[ThrowawayServer]:
    server_class = SERVERS.get(kind.lower())
    if server_class is None:
        raise errors.ServerError(
            errors.message(
                f"there is no throwaway server of kind {kind!r}. Use one of: "
                f"{', '.join(sorted(SERVERS))}."
            )
        )
    return server_class


def _owner_is_dead(directory: Path, record: dict[str, Any] | None, now: float) -> bool:
    """Whether the run that owns the server ``directory`` (as ``record`` says) is over."""
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

    The data a server kept for the next run (outside ``root``) is left where it is;
    its data in RAM is deleted with it. So is data in RAM (of any root) whose
    server directory is gone and whose run is over.

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
        match = DIRECTORY_NAME.match(directory.name)
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
    _reap_ram(now)
    return reaped


def _reap_ram(now: float) -> None:
    """Stop and delete the data in RAM whose server directory is gone and whose run is over.

    Such data is left when a run was killed and its server directory deleted
    by someone else since (a cleaned temporary directory, say). Only
    directories with the record this package writes are looked at.
    """
    by_prefix = {server.prefix: server for server in SERVERS.values()}
    for root in ram.roots():
        try:
            entries = sorted(root.iterdir())
        except OSError:
            continue
        for home in entries:
            match = DIRECTORY_NAME.match(home.name)
            record = ram.record(home) if match is not None and not home.is_symlink() else None
            if match is None or record is None:
                continue
            directory = Path(record["server_directory"])
            if os.path.lexists(directory) or not _owner_is_dead(home, record, now):
                continue
            kind = record.get("kind")
            server_class = SERVERS.get(kind) if isinstance(kind, str) else None
            server_class = server_class or by_prefix.get(match["prefix"])
            if server_class is None:
                continue
            with contextlib.suppress(errors.ServerError):
                server_class._adopt_data(home, directory).stop()
