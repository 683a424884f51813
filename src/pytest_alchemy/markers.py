"""The ``alchemy_db`` marker: which tests use the database, and how.

``@pytest.mark.alchemy_db`` on a test, class or module (``pytestmark``) gives
the tests a database even when they request no ``alchemy_*`` fixture (for
example when they only call app code whose sessions are rebound), and selects
options for them. Keywords are validated by a signature function, so a typo
or an unknown value is an error naming the valid choices, not a silent default.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ConfigurationError, message
from .settings import ISOLATION_STRATEGIES as STRATEGIES
from .settings import LEAK_CHECK_MODES

NAME = "alchemy_db"


def description(strategies: Collection[str] = STRATEGIES) -> str:
    """The marker's line in ``pytest --markers``, with the run's strategies."""
    return (
        f"{NAME}(isolation=None, leak_check=None): the test uses the test database; "
        f"isolation: one of {', '.join(strategies)}; leak_check: one of "
        f"{', '.join(LEAK_CHECK_MODES)}."
    )


@dataclass(frozen=True)
class MarkerOptions:
    isolation: str | None = None
    leak_check: str | None = None


def _signature(*, isolation: str | None = None, leak_check: str | None = None) -> MarkerOptions:
    return MarkerOptions(isolation=isolation, leak_check=leak_check)


def parse(
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    where: str,
    strategies: Collection[str] = STRATEGIES,
) -> MarkerOptions:
    """Validate one marker's arguments; ``where`` names the test for the message."""
    if args:
        raise ConfigurationError(
            message(
                f"{where}: @pytest.mark.{NAME} takes keyword arguments only, got positional "
                f"{list(args)!r}. Use @pytest.mark.{NAME}(isolation='savepoint')."
            )
        )
    try:
        options = _signature(**kwargs)
    except TypeError:
        unknown = sorted(set(kwargs) - {"isolation", "leak_check"})
        raise ConfigurationError(
            message(
                f"{where}: @pytest.mark.{NAME} got unknown keyword(s) {', '.join(unknown)}. "
                "Valid keywords: isolation, leak_check."
            )
        ) from None
    if options.isolation is not None and options.isolation not in strategies:
        raise ConfigurationError(
            message(
                f"{where}: @pytest.mark.{NAME}(isolation={options.isolation!r}) names no "
                f"isolation strategy. Valid choices: {', '.join(strategies)}."
            )
        )
    if options.leak_check is not None and options.leak_check not in LEAK_CHECK_MODES:
        raise ConfigurationError(
            message(
                f"{where}: @pytest.mark.{NAME}(leak_check={options.leak_check!r}) is not a "
                f"leak check mode. Valid choices: {', '.join(LEAK_CHECK_MODES)}."
            )
        )
    return options


def merge(
    markers: Sequence[tuple[Sequence[Any], Mapping[str, Any]]],
    where: str,
    strategies: Collection[str] = STRATEGIES,
) -> MarkerOptions:
    """The closest marker's options win, keyword by keyword (test over class over module)."""
    isolation = leak_check = None
    for args, kwargs in markers:
        options = parse(args, kwargs, where, strategies)
        isolation = isolation or options.isolation
        leak_check = leak_check or options.leak_check
    return MarkerOptions(isolation=isolation, leak_check=leak_check)
