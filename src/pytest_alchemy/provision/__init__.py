"""Creating, recording and dropping test databases, one backend per module."""

from __future__ import annotations

from ._dispatch import BACKENDS, backend_for
from .base import (
    KIND_KEPT,
    KIND_REUSE,
    KIND_RUN,
    STATE_BUILDING,
    STATE_CLEAN,
    STATE_IN_USE,
    Backend,
    Guard,
    Record,
    StateProbe,
)

__all__ = [
    "BACKENDS",
    "KIND_KEPT",
    "KIND_REUSE",
    "KIND_RUN",
    "STATE_BUILDING",
    "STATE_CLEAN",
    "STATE_IN_USE",
    "Backend",
    "Guard",
    "Record",
    "StateProbe",
    "backend_for",
]
