"""Every error pytest-alchemy raises, and the words it uses to explain them.

The modules that do database work never import pytest: they raise the
exceptions below, and the pytest layer (``plugin.py``, ``fixtures.py``) turns a
:class:`ConfigurationError` into a ``pytest.UsageError`` at start-up or into a
test error without a plugin traceback. Each message says what happened and
what to do next, in one paragraph.
"""

from __future__ import annotations


class AlchemyError(Exception):
    """Base class of every error raised by pytest-alchemy."""


class ConfigurationError(AlchemyError):
    """A setting, fixture value or marker cannot work; the message says how to fix it."""


class SafetyError(ConfigurationError):
    """The run would create, empty or drop a database that is not a test database."""


class DriverMissingError(ConfigurationError):
    """The URL names a driver that is not installed."""


class ProvisionError(AlchemyError):
    """Creating, checking or dropping the test database failed."""


class RunConflictError(ProvisionError):
    """The test database belongs to another pytest run that is still alive."""


class ServerError(AlchemyError):
    """A throwaway database server could not be started or stopped."""


class SchemaError(AlchemyError):
    """Building the schema of the test database failed."""


class IsolationError(AlchemyError):
    """A test escaped its isolation: its writes or session state reached the database."""


class LeakError(IsolationError):
    """After a test, the database was not back at its baseline."""


class LockTimeoutError(AlchemyError):
    """A lock wait of the plugin took longer than ``lock_timeout``."""


class LoopMismatchError(AlchemyError, RuntimeError):
    """An async connection was used from an event loop other than its own."""


PREFIX = "pytest-alchemy: "


def message(text: str) -> str:
    """A message as users see it: prefixed with the plugin's name once."""
    return text if text.startswith(PREFIX) else PREFIX + text
