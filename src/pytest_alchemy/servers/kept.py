"""A throwaway server's data directory kept between runs, and the lock that lends it to one run.

With ``reuse_db`` a throwaway server keeps its data in a directory of its own
(in pytest's cache directory, one per kind and major version), so that the
next run starts a server on the same data and reuses the test database in it.
Only one run at a time may serve a kept directory: the run that serves it
holds an exclusive lock on a file in it (released by the system when the run
ends, however it ends) and writes who it is beside that file, so that another
run can say who holds it. A run that cannot have the lock uses a throwaway
server of its own and says why.

Layout of one kept directory::

    <kind>-<major>/
        data/          the server's data directory
        kept.json      written once the data directory was made whole
        lock           the lock file; holder.json names the run holding it
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import IO, Any

from .. import files
from ..runs import RunIdentity

LOCK_FILE = "lock"
HOLDER_FILE = "holder.json"
KEPT_FILE = "kept.json"


def holder(home: Path) -> RunIdentity | None:
    """The other live run that holds the kept directory ``home``, if any."""
    record = files.read_json(home / HOLDER_FILE)
    owner = RunIdentity.from_dict(record.get("owner")) if record else None
    if owner is None or owner.is_me() or not owner.is_alive():
        return None
    return owner


def made_by(home: Path) -> dict[str, Any] | None:
    """The record written once the data directory in ``home`` was made whole."""
    return files.read_json(home / KEPT_FILE)


def record_made(home: Path, kind: str, version: str) -> None:
    text = json.dumps({"kind": kind, "version": version}, indent=2, sort_keys=True) + "\n"
    files.write_atomically(home / KEPT_FILE, text)


class KeptLock:
    """The exclusive lock on a kept directory; the system drops it when its process ends."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._file: IO[bytes] | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; whether this process now holds it."""
        import fcntl  # POSIX only, like the servers themselves

        if self._file is not None:
            return True
        handle = open(self.home / LOCK_FILE, "a+b")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        try:
            record = {"owner": RunIdentity.current().to_dict(), "pid": os.getpid()}
            files.write_atomically(self.home / HOLDER_FILE, json.dumps(record) + "\n")
        except BaseException:
            self.release()
            raise
        return True

    def release(self) -> None:
        """Let the next run have the kept directory; calling it again does nothing."""
        if self._file is None:
            return
        with contextlib.suppress(OSError):
            (self.home / HOLDER_FILE).unlink()
        self._file.close()  # closing the file drops the lock
        self._file = None
