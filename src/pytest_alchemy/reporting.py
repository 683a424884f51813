"""How the plugin's findings reach the user: as test errors without a plugin traceback,
and as the figures of the terminal summary.

Modules that do database work raise :class:`~pytest_alchemy.errors.AlchemyError`
subclasses and return :class:`~pytest_alchemy.isolation.cycle.Outcome` objects;
only this module (and the hooks) turn them into pytest failures and warnings, so
every fixture, sync or async, reports the same thing in the same words.
"""

from __future__ import annotations

import statistics
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Overhead:
    """The isolation overhead of a run: the steady tests' median, the first tests apart."""

    median_ms: float
    steady: int
    """How many tests the median is taken over (0: only first tests ran)."""
    first_ms: float
    """The slowest of the processes' first tests."""


def overhead(runs: Iterable[list[float]]) -> Overhead | None:
    """The :class:`Overhead` of the ``samples`` of one or more processes (pytest-xdist
    workers each send theirs, so the median is exact across workers, not a median of
    medians). A process's first test is left out of the median; with no other test, the
    first test is all there is (``steady`` is 0)."""
    found = [samples for samples in runs if samples]
    if not found:
        return None
    firsts = [samples[0] for samples in found]
    steady = [sample for samples in found for sample in samples[1:]]
    return Overhead(
        median_ms=statistics.median(steady or firsts) * 1000,
        steady=len(steady),
        first_ms=max(firsts) * 1000,
    )
