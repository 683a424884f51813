"""Who is running: an identity for this pytest process, and whether another one is alive.

Everything pytest-alchemy leaves on a server or on disk while a run is going
(a test database, a throwaway server's data directory) carries the owner's
:class:`RunIdentity`. The next run reaps what belongs to dead runs and refuses
to touch what belongs to live ones. A run on this machine is alive when its
process exists and started at the recorded time (so a recycled pid does not
count); a run on another machine, or before the last reboot, is judged by its
heartbeat.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .processes import pid_exists, process_start, running

__all__ = ["HEARTBEAT_EVERY", "STALE_AFTER", "RunIdentity", "pid_exists", "process_start"]

STALE_AFTER = 600.0
"""Seconds without a heartbeat after which a run on another host counts as dead."""

HEARTBEAT_EVERY = 60.0
"""Seconds between two heartbeats of a live run."""


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:  # pragma: no cover - systems without /proc
        return ""


@dataclass(frozen=True)
class RunIdentity:
    """One pytest process, as recorded next to what it creates."""

    host: str
    boot_id: str
    pid: int
    started: str
    heartbeat: float = field(default=0.0, compare=False)

    @classmethod
    def current(cls) -> RunIdentity:
        pid = os.getpid()
        return cls(
            host=socket.gethostname(),
            boot_id=_boot_id(),
            pid=pid,
            started=process_start(pid),
            heartbeat=time.time(),
        )

    def beat(self) -> RunIdentity:
        return RunIdentity(self.host, self.boot_id, self.pid, self.started, time.time())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> RunIdentity | None:
        """Read a recorded identity; None when ``data`` is not one."""
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                host=str(data["host"]),
                boot_id=str(data["boot_id"]),
                pid=int(data["pid"]),
                started=str(data["started"]),
                heartbeat=float(data.get("heartbeat", 0.0)),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def is_local(self) -> bool:
        here = RunIdentity.current()
        return self.host == here.host and self.boot_id == here.boot_id

    def is_alive(self, *, now: float | None = None, stale_after: float = STALE_AFTER) -> bool:
        """Whether the recorded run may still be going."""
        if self.is_local():
            return running(self.pid) and (
                not self.started or process_start(self.pid) in ("", self.started)
            )
        now = time.time() if now is None else now
        return now - self.heartbeat < stale_after

    def is_me(self) -> bool:
        here = RunIdentity.current()
        return (self.host, self.boot_id, self.pid, self.started) == (
            here.host,
            here.boot_id,
            here.pid,
            here.started,
        )

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.heartbeat))
        return f"pid {self.pid} on {self.host} (last seen {when})"
