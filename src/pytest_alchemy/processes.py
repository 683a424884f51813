"""Processes as the kernel reports them: alive or not, since when, whose children, what command.

Deciding whether something left behind may be deleted, or whether a process may
be signalled, rests on these answers, so this module keeps three promises:

* **A recycled pid is not taken for the recorded process.** :func:`process_start`
  gives the kernel's start time of a pid; a process with the same pid but
  another start time is another process.
* **A zombie counts as gone.** A process that has exited but was not collected
  by its parent yet (common under a container init that does not reap) still
  has a pid; :func:`running` is False for it and :func:`exited` True, since it
  will never do anything again.
* **A process is killed with its children.** :func:`kill_tree` kills the
  process and each of its direct children, each with its process group when it
  leads one, so children that moved to a session of their own are not left
  running.

The failure this prevents is one of inconsistent answers: a run or a server
judged dead by one check and alive by another, because each read
``/proc/<pid>/stat`` its own way. Every answer here comes from one reading,
:func:`read_stat`. Where there is no ``/proc``, :func:`pid_exists` still
answers (by signal 0) and :func:`command_line` asks ``ps``; the rest answer
as if nothing were known.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ProcessStat",
    "child_pids",
    "command_line",
    "exited",
    "kill_tree",
    "pid_exists",
    "process_start",
    "read_stat",
    "running",
    "wait_gone",
]

_GONE_STATES = ("Z", "X")
"""Process states of one that has exited: a zombie, or dead and about to vanish."""


@dataclass(frozen=True)
class ProcessStat:
    """What ``/proc/<pid>/stat`` says about one process."""

    state: str
    """The one-letter state, such as ``"R"``, ``"S"`` or ``"Z"``; "" when not given."""
    ppid: int
    """The parent's process id; -1 when not given."""
    start: str
    """The start time after boot, in clock ticks, as the kernel writes it; "" when not given."""


def read_stat(pid: int | str) -> ProcessStat | None:
    """The kernel's status line of ``pid``, parsed; None when it cannot be read."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        # The command name (field 2) may contain spaces and parentheses.
        fields = text[text.rindex(")") + 2 :].split()
        ppid = int(fields[1]) if len(fields) > 1 else -1
    except (OSError, ValueError):
        return None
    return ProcessStat(
        state=fields[0] if fields else "",
        ppid=ppid,
        start=fields[19] if len(fields) > 19 else "",
    )


def process_start(pid: int) -> str:
    """The start time of ``pid`` as the kernel reports it, or "" when unknown.

    Two processes with the same pid and the same boot have different start
    times, so this tells a recycled pid from the process that was recorded.
    """
    found = read_stat(pid)
    return found.start if found is not None else ""


def pid_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists, a zombie included, whoever owns it."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def exited(pid: int) -> bool:
    """Whether ``pid`` has exited and only waits for its parent to collect it (a zombie)."""
    found = read_stat(pid)
    return found is not None and found.state in _GONE_STATES


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process; a zombie waiting to be collected is not."""
    return pid_exists(pid) and not exited(pid)


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid``, where the system tells (Linux); else none."""
    children: list[int] = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            found = read_stat(entry.name)
            if found is not None and found.ppid == pid:
                children.append(int(entry.name))
    return children


def command_line(pid: int) -> str | None:
    """The command line of ``pid``, its arguments joined by spaces; None when it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return None
        return _ps_command_line(pid)  # pragma: no cover - systems without /proc
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _ps_command_line(pid: int) -> str | None:  # pragma: no cover - systems without /proc
    """The command line of ``pid`` as ``ps`` shows it, where there is no /proc."""
    try:
        done = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``pid`` to stop running; whether it did."""
    deadline = time.monotonic() + timeout
    while running(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and its children, each with its process group when it leads one.

    Server processes often put each child in a session of its own, so killing
    the main process's group alone would leave the children running. A process
    that is already gone is skipped; :class:`PermissionError` is raised at the
    first one that may not be signalled.
    """
    for target in (pid, *child_pids(pid)):
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(target) == target:
                os.killpg(target, signal.SIGKILL)
            else:
                os.kill(target, signal.SIGKILL)
