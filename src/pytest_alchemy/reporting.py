"""How the plugin's findings reach the user: as test errors without a plugin traceback.

Modules that do database work raise :class:`~pytest_alchemy.errors.AlchemyError`
subclasses and return :class:`~pytest_alchemy.isolation.cycle.Outcome` objects;
only this module (and the hooks) turn them into pytest failures and warnings, so
every fixture, sync or async, reports the same thing in the same words.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pytest

from .errors import AlchemyError, AlchemyLeakWarning

if TYPE_CHECKING:
    from .isolation.cycle import Outcome


@contextmanager
def reported() -> Iterator[None]:
    """Turn the plugin's own errors into a test error without a plugin traceback."""
    try:
        yield
    except AlchemyError as error:
        raise pytest.fail.Exception(str(error), pytrace=False) from None


def report_outcome(outcome: Outcome, nodeid: str, leak_check: str, engine: str) -> None:
    """Fail (or warn about) what ending the test ``nodeid`` found, in one error."""
    hard = [
        text
        for text in (
            outcome.problem,
            outcome.breach_message(nodeid),
            outcome.blocker_message(nodeid),
            outcome.unreturned_message(nodeid, engine),
        )
        if text is not None
    ]
    leak = outcome.leak_message(nodeid)
    if leak is not None and leak_check == "warn":
        warnings.warn(AlchemyLeakWarning(leak), stacklevel=1)
    elif leak is not None and leak_check == "fail":
        hard.append(leak)
    if hard:
        pytest.fail("\n\n".join(hard), pytrace=False)
