"""Isolation strategies, keyed by name. One registry, filled once at import."""

from __future__ import annotations

from .base import Strategy, TestTransaction
from .none import NoneStrategy
from .savepoint import SavepointStrategy

STRATEGIES: dict[str, type[Strategy]] = {
    SavepointStrategy.name: SavepointStrategy,
    NoneStrategy.name: NoneStrategy,
}

__all__ = ["STRATEGIES", "NoneStrategy", "SavepointStrategy", "Strategy", "TestTransaction"]
