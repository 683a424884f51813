"""pytest-xdist: which worker this process is, read the way xdist hands it over.

A worker gets its id in ``config.workerinput`` (set by the controller before the
worker configures), and xdist also exports it as ``PYTEST_XDIST_WORKER`` for
processes the worker starts; the controller and a run without xdist have
neither. Each worker then plans its own test database (``test_app_gw0``...).
"""

from __future__ import annotations

import os
from typing import Any

import pytest


def worker_id(config: pytest.Config) -> str | None:
    """The id of the pytest-xdist worker running this process (``gw0``...), if any."""
    workerinput: Any = getattr(config, "workerinput", None)
    found = workerinput.get("workerid") if isinstance(workerinput, dict) else None
    return str(found or os.environ.get("PYTEST_XDIST_WORKER") or "") or None
