"""Small files that another process may read while this one writes them: whole, or not at all.

The records pytest-alchemy keeps on disk (a throwaway server's owner record,
the record beside a SQLite test database) are read by other runs to decide
what they may delete. This module keeps two promises:

* **A reader sees the old file or the new one, never half of one.**
  :func:`write_atomically` writes a temporary file in the same directory and
  renames it over the target, which is atomic on one file system. The
  temporary name carries the writer's pid and a random part, so two writers
  never share one; a failed write removes its temporary file and raises the
  :class:`OSError` for the caller to word. (Atomic for readers, not durable: a
  crash of the machine may lose the latest write.)
* **A record that cannot be read is no record.** :func:`read_json` answers
  None for a file that is missing, unreadable, not JSON, or not a JSON object,
  instead of raising, so a damaged record never stops a run.

The failure this prevents is a record read half-written by another run,
taken for garbage, and what it describes deleted from under its owner.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["read_json", "write_atomically"]


def write_atomically(path: Path, text: str) -> None:
    """Replace the content of ``path`` with ``text`` in one step; :class:`OSError` when it fails."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}-{os.urandom(3).hex()}.tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when there is none to read."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
