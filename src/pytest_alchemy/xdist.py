"""pytest-xdist: which worker this process is, and the controller's view of the workers.

A worker gets its id in ``config.workerinput`` (set by the controller before the
worker configures), and xdist also exports it as ``PYTEST_XDIST_WORKER`` for
processes the worker starts; the controller and a run without xdist have
neither. Each worker plans its own test database (``test_app_gw0``...), and
sends its figures back in ``config.workeroutput`` when it finishes.

:class:`ControllerHooks` is registered only on the controller of a distributed
run: it collects the workers' figures as they go down, so that the controller's
terminal summary (the one users see) reports every worker's database.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

OUTPUT_KEY = "alchemy"
"""The key of the plugin's figures in a worker's ``workeroutput``."""


def worker_id(config: pytest.Config) -> str | None:
    """The id of the pytest-xdist worker running this process (``gw0``...), if any."""
    workerinput: Any = getattr(config, "workerinput", None)
    found = workerinput.get("workerid") if isinstance(workerinput, dict) else None
    return str(found or os.environ.get("PYTEST_XDIST_WORKER") or "") or None


def is_controller(config: pytest.Config) -> bool:
    """Whether this process distributes tests to pytest-xdist workers."""
    if not config.pluginmanager.hasplugin("xdist") or hasattr(config, "workerinput"):
        return False
    return str(config.getoption("dist", "no")) != "no"


def worker_count(config: pytest.Config) -> int:
    """How many workers the controller starts (0 when it cannot tell yet)."""
    found = config.getoption("numprocesses", None)
    return found if isinstance(found, int) else 0


def send(config: pytest.Config, figures: dict[str, Any]) -> None:
    """On a worker: hand ``figures`` to the controller."""
    output: Any = getattr(config, "workeroutput", None)
    if isinstance(output, dict):
        output[OUTPUT_KEY] = figures


class ControllerHooks:
    """The controller's side: the figures each worker sent, by worker id."""

    def __init__(self) -> None:
        self.workers: dict[str, dict[str, Any]] = {}

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", None)
        if not isinstance(output, dict):
            return
        figures = output.get(OUTPUT_KEY)
        if isinstance(figures, dict):
            self.workers[str(output.get("workerid", len(self.workers)))] = figures
