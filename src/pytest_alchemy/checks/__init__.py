"""What the plugin checks on a connection around each test, one module per backend.

Where ``provision`` creates and drops test databases once per run, a
:class:`~pytest_alchemy.checks.base.SessionChecks` object works on the
connections of one test database, test after test: it records a connection's
state when it is first used, probes what a test left (commits made elsewhere,
session state, other sessions inside a transaction), resets it, lists and
empties tables for the leak check, and explains driver errors. It keeps the
probe's position between tests, so there is one per test database.
"""

from __future__ import annotations

from .base import STATE_KINDS, SessionChecks, StateProbe, closed_after_test

__all__ = ["STATE_KINDS", "SessionChecks", "StateProbe", "closed_after_test"]
