"""Seed data in layers: rows a fixture wider than a test writes, seen by every test of
its scope and undone at the end of it.

A layer holds one connection inside a transaction for as long as its fixture is
set up: the outermost layer opens the connection and begins the transaction, a
layer set up inside it (session > package > module > class) begins a savepoint
on the same connection. While a layer is set up, every test of the run runs on
its connection, inside a savepoint of its own that is rolled back when the test
ends; so the tests all see the layer's rows and none sees another's changes.
The layer's transaction is rolled back when its fixture is torn down: its rows
were never committed, so nothing of them reaches the next module, the next run
or the leak check's baseline.

The active layers are a stack on the run's :class:`~.cycle.CycleState`; the
per-test cycle (``cycle.py``) asks it which connection a test runs on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection, Transaction

from ..errors import ConfigurationError, message

if TYPE_CHECKING:
    from .base import Strategy

SCOPES = ("class", "module", "package", "session")
"""The scopes a layer can have, narrowest first."""


@dataclass(eq=False)
class Layer:
    """One layer of seed data: its connection, transaction and where it lives."""

    name: str
    """The fixture's name."""
    scope: str
    connection: Connection
    """The sync connection (an async layer's ``AsyncConnection.sync_connection``)."""
    transaction: Transaction
    """The outermost layer's transaction, or a nested layer's savepoint."""
    parent: Layer | None = None
    is_async: bool = False
    async_connection: Any = None
    """An async layer's ``AsyncConnection``, on the loop the layer was set up on."""
    engine: Any = None
    """An async layer's ``AsyncEngine`` (the loop's)."""
    loop: Any = None
    """An async layer's event loop."""
    loop_scope: str | None = None
    broken: str | None = None
    """Why the layer cannot serve tests any more (a test ended its transaction...)."""
    test_savepoint: str | None = None
    """The savepoint its tests are rolled back to, once set."""
    below: Transaction | None = None
    """The innermost savepoint begun through SQLAlchemy when ``test_savepoint`` was set
    (None: none was): what a test's savepoints are unwound down to."""
    savepoints: int = 0

    @property
    def described(self) -> str:
        kind = "async " if self.is_async else ""
        return f"the {self.scope}-scoped {kind}layer {self.name}"

    @property
    def outermost(self) -> bool:
        return self.parent is None

    @property
    def depth(self) -> int:
        return 0 if self.parent is None else self.parent.depth + 1

    def enter_test(self) -> None:
        """Make sure the savepoint the next test is rolled back to is set.

        The savepoint is plain SQL, unknown to SQLAlchemy, so rolling back to it leaves
        it in place. It is set again only when SQLAlchemy's innermost savepoint is not
        the one it was set on (a fixture between two tests began or ended one); each
        name is used once per connection, which every backend accepts.
        """
        connection = self.connection
        current = connection.get_nested_transaction()
        if self.test_savepoint is not None and current is self.below:
            return
        self.savepoints += 1
        name = f"alchemy_test_{self.depth}_{self.savepoints}"
        connection.exec_driver_sql(f"SAVEPOINT {name}")
        self.test_savepoint, self.below = name, current

    def leave_test(self) -> None:
        """Roll the test back to the layer: the savepoints it left open (innermost first),
        then what it wrote, keeping the savepoint for the next test."""
        connection = self.connection
        unwind(connection, self.below, self.transaction)
        assert self.test_savepoint is not None
        connection.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {self.test_savepoint}")


def check_strategy(strategy: Strategy, where: str, layer_name: str) -> None:
    """A clear error when ``strategy`` cannot keep a test inside a layer."""
    if strategy.supports_layers:
        return
    raise ConfigurationError(
        message(
            f"{where} uses the isolation strategy {strategy.name!r}, which cannot run inside "
            f"the layer {layer_name}: a layer keeps its rows in a transaction that stays open "
            "for its whole scope, and only a strategy that isolates each test in a savepoint "
            "of that transaction (savepoint) can run tests inside it. Use "
            "alchemy_isolation = savepoint (or @pytest.mark.alchemy_db(isolation='savepoint')) "
            "for the tests of the layer's scope, or seed the rows in the tests themselves."
        )
    )


def check_order(layers: list[Layer], name: str, scope: str) -> None:
    """A layer can be set up inside one of the same or a wider scope only."""
    if not layers:
        return
    top = layers[-1]
    if SCOPES.index(scope) > SCOPES.index(top.scope):
        raise ConfigurationError(
            message(
                f"the {scope}-scoped layer {name} is set up while {top.described} is set up, "
                f"but it outlives it: pytest tears {top.name} down first, and with it the "
                f"transaction {name} would live in. Request {name} before {top.name} is set "
                f"up (in an earlier test, or autouse=True in a conftest.py), or give it scope "
                f"{top.scope!r}."
            )
        )


def check_kind(layer: Layer, where: str, *, is_async: bool) -> None:
    """A sync test cannot run on an async layer's connection, nor the other way round."""
    if layer.broken is not None:
        raise ConfigurationError(layer.broken)
    if layer.is_async == is_async:
        return
    if is_async:
        raise ConfigurationError(
            message(
                f"{where} is an async test, but it runs while {layer.described} is set up, "
                "whose rows live on a sync connection. Make the layer an async def fixture "
                "(its alchemy_async_session writes the rows), or make the test a plain def."
            )
        )
    raise ConfigurationError(
        message(
            f"{where} is a sync test, but it runs while {layer.described} is set up, whose "
            "rows live on an AsyncConnection. Make the test async def (on the layer's event "
            f"loop: loop_scope={layer.loop_scope!r}), or make the layer a plain def fixture "
            "(its alchemy_session writes the rows)."
        )
    )


def wrong_loop(layer: Layer, where: str, route: str) -> ConfigurationError:
    return ConfigurationError(
        message(
            f"{where} runs on the pytest-asyncio event loop of scope {route!r}, but "
            f"{layer.described} keeps its connection on the loop of scope "
            f"{layer.loop_scope!r}, and a connection can be used only on the loop it was "
            f"opened on. Run the tests of the layer's scope on that loop: "
            f"@pytest.mark.asyncio(loop_scope={layer.loop_scope!r}) (on the module, with "
            f"pytestmark, or asyncio_default_test_loop_scope = {layer.loop_scope})."
        )
    )


def ended_by_test(layer: Layer, nodeid: str) -> str:
    """Why the layer is over (without the plugin's prefix: said as a breach of the test,
    or, wrapped in :func:`message`, to the layer's later tests)."""
    return (
        f"{nodeid} ended the transaction of {layer.described} (alchemy_connection.commit() "
        "or .rollback(), or session.connection().commit()), so its rows were committed or "
        "undone for good, and the layer cannot serve later tests. Commit through a session "
        "instead, which pytest-alchemy turns into a savepoint release."
    )


def unwind(connection: Connection, *down_to: Transaction | None) -> None:
    """Roll back the savepoints begun on ``connection`` after the first of ``down_to``
    met (sessions, the app, the test itself), innermost first."""
    stops = [stop for stop in down_to if stop is not None]
    nested = connection.get_nested_transaction()
    while nested is not None and all(nested is not stop for stop in stops):
        nested.rollback()
        following = connection.get_nested_transaction()
        if following is nested:  # pragma: no cover - SQLAlchemy always pops it
            break
        nested = following
