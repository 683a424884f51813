"""Async fixtures: every connection opened, used and closed on the test's own event loop.

**The failure this prevents.** A pooled async connection opened on one event
loop and used on another fails with "attached to a different loop" (asyncpg
is left unusable), "Event loop is closed", or hangs. Hand-written conftests hit
it whenever a fixture's loop scope differs from the test's, and pytest-asyncio
strict mode silently ignores plain ``async def`` fixtures.

**The design.** The public async fixtures (``alchemy_async_session``...) are
plain sync fixtures. As one of them is set up, the plugin's
``pytest_fixture_setup`` hook looks at the test and sets up the internal
fixture that runs on the test's loop, which publishes the test's connection
for the public fixtures to hand out:

* a pytest-asyncio test with loop scope ``S`` (its ``asyncio`` marker, else
  ``asyncio_default_test_loop_scope``) gets ``_alchemy_async_test_S``,
  declared with ``pytest_asyncio.fixture(loop_scope=S)``, strict and auto mode
  alike. For ``S`` wider than function its engine is pooled and lives exactly
  as long as that loop; for a per-test loop the engine uses no pool (a
  connection cannot outlive its loop), and the benchmark reports that cost.
* an anyio test (``anyio`` marker or ``anyio_backend`` fixture, asyncio
  backend) gets a plain async fixture, which anyio runs on the test's own
  loop; trio is refused, SQLAlchemy's async layer is asyncio-only.

A **loop guard** on every connection turns a statement sent from another loop
(or from a thread without one) into :class:`LoopMismatchError` naming the
fixture and both loop scopes, before the driver sees it. Tasks the test
started that still use the connection at teardown are named in the test's
error and cancelled, and the connection is closed instead of rolled back next
to them, so neither the tasks nor a lock they held reach the next test.

The isolation itself is the sync code of ``isolation.cycle``, run through
``AsyncConnection.run_sync``: sync and async tests follow the same rules.

The package's modules: ``guard`` (the loop guard), ``cycle`` (one async test on
its loop), ``routing`` (which loop fixture serves a test) and ``fixtures`` (the
public fixtures and the per-loop ones).
"""

from __future__ import annotations

from . import fixtures
from .fixtures import internal_fixtures
from .routing import ROUTED, open_on_loop

__all__ = ["ROUTED", "fixtures", "internal_fixtures", "open_on_loop"]
