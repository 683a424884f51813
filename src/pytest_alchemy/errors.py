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


class DatabaseBlockedError(AlchemyError):
    """Code without database access (a test without the marker or a database fixture,
    a fixture wider than a test) tried to connect; nothing was sent."""


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


EXPLAINED = "_pytest_alchemy_explained"
"""Marks an exception whose text the plugin made clearer (see :func:`mark_explained`)."""


def mark_explained(error: BaseException) -> BaseException:
    """Mark ``error`` as a clearer copy of a driver error, whose text it includes."""
    setattr(error, EXPLAINED, True)
    return error


def drop_explained_causes(error: BaseException) -> None:
    """Unchain the raw driver error behind each explained error in ``error``'s chain.

    SQLAlchemy raises an explained error ``from`` the driver's own, so a report would
    show the same error twice: first the raw one with the driver's traceback, then the
    plugin's paragraph, which already quotes what the driver said. The raw error stays
    reachable as the explained one's ``orig``.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if getattr(current, EXPLAINED, False):
            current.__cause__ = None
            current.__suppress_context__ = True
            return
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
