"""pytest-alchemy: managed test databases and per-test isolation for SQLAlchemy 2.x.

Install it, name your metadata in one ini line (``alchemy_metadata =
myapp.models:Base``), and every test that asks for ``alchemy_session`` gets an
isolated session on a test database that the plugin creates, builds and drops.
"""

from __future__ import annotations

from .database import DatabaseInfo
from .errors import (
    AlchemyError,
    ConfigurationError,
    IsolationError,
    LeakError,
    LockTimeoutError,
    LoopMismatchError,
    ProvisionError,
    RunConflictError,
    SafetyError,
    SchemaError,
    ServerError,
)
from .fixtures import AlchemyLeakWarning

__version__ = "0.1.0"

__all__ = [
    "AlchemyError",
    "AlchemyLeakWarning",
    "ConfigurationError",
    "DatabaseInfo",
    "IsolationError",
    "LeakError",
    "LockTimeoutError",
    "LoopMismatchError",
    "ProvisionError",
    "RunConflictError",
    "SafetyError",
    "SchemaError",
    "ServerError",
    "__version__",
]
