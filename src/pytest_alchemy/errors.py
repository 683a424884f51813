"""Every error pytest-alchemy raises, and the words it uses to explain them.

The modules that do database work never import pytest: they raise the
exceptions below, and the pytest layer (``plugin.py``, ``reporting.py``) turns a
:class:`ConfigurationError` into a ``pytest.UsageError`` at start-up or into a
test error without a plugin traceback. Each message says what happened and
what to do next, in one paragraph.

What a test leaves behind (a leak, a breach of its isolation, a held lock) is not
an exception a caller could catch: it fails the teardown of the test that caused
it, or warns with :class:`AlchemyLeakWarning` under ``alchemy_leak_check = warn``.
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


class LoopMismatchError(AlchemyError, RuntimeError):
    """An async connection was used from an event loop other than its own."""


class AlchemyLeakWarning(UserWarning):
    """A test left changes in the database (with ``alchemy_leak_check = warn``)."""


PREFIX = "pytest-alchemy: "


def message(text: str) -> str:
    """A message as users see it: prefixed with the plugin's name once."""
    return text if text.startswith(PREFIX) else PREFIX + text


def first_line(error: BaseException) -> str:
    """The first line of what the driver said, for a message of the plugin's own."""
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__
