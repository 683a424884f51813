"""pytest-alchemy: managed test databases and per-test isolation for SQLAlchemy 2.x.

Install it, name your metadata in one ini line (``alchemy_metadata =
myapp.models:Base``), and every test that asks for ``alchemy_session`` gets an
isolated session on a test database that the plugin creates, builds and drops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    AlchemyError,
    AlchemyLeakWarning,
    ConfigurationError,
    LoopMismatchError,
    ProvisionError,
    RunConflictError,
    SafetyError,
    SchemaError,
    ServerError,
)

if TYPE_CHECKING:
    from .database import DatabaseInfo
    from .layers import layer

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Loaded on first use, so that pytest's start-up does not import SQLAlchemy.
    if name == "DatabaseInfo":
        from .database import DatabaseInfo

        return DatabaseInfo
    if name == "layer":
        from .layers import layer

        return layer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AlchemyError",
    "AlchemyLeakWarning",
    "ConfigurationError",
    "DatabaseInfo",
    "LoopMismatchError",
    "ProvisionError",
    "RunConflictError",
    "SafetyError",
    "SchemaError",
    "ServerError",
    "__version__",
    "layer",
]
