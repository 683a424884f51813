"""Creating, recording and dropping test databases, one backend per module."""

from __future__ import annotations

from .base import (
    KIND_KEPT,
    KIND_REUSE,
    KIND_RUN,
    KIND_TEMPLATE,
    STATE_BUILDING,
    STATE_CLEAN,
    STATE_IN_USE,
    Guard,
    Provisioner,
    Record,
)
from .registry import BACKENDS, provisioner_for

__all__ = [
    "BACKENDS",
    "KIND_KEPT",
    "KIND_REUSE",
    "KIND_RUN",
    "KIND_TEMPLATE",
    "STATE_BUILDING",
    "STATE_CLEAN",
    "STATE_IN_USE",
    "Guard",
    "Provisioner",
    "Record",
    "provisioner_for",
]
