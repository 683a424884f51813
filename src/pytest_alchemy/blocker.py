"""Keeping code that did not ask for the database away from every database.

Outside a database test the objects listed in ``alchemy_app_sessions`` are not
bound to anything of the plugin's: they still point at the application's own,
real database. So while a test without the ``alchemy_db`` marker or a database
fixture runs, and while a fixture wider than a function (which no test's
transaction covers) is set up or torn down, the :class:`Blocker` refuses:

* every connection of the engines behind the listed objects, before the driver
  is called (``do_connect``) or a pooled connection is handed out
  (``checkout``): nothing is sent, a SQLite file is not even opened;
* every connection to the test database, whatever engine opens it.

While a database test runs, the listed objects are bound to the test's
connection, but what they were made from is not: the engine behind a listed
session factory still points at the application's own database. A connection of
such an engine during a database test is refused too, unless that engine points
at the test database itself.

A refusal raises :class:`~pytest_alchemy.errors.DatabaseBlockedError` and is also
kept, so that a test whose code swallows the error fails all the same.
:meth:`Blocker.unblock` lifts the block for a ``with`` block; what such a block
commits to the test database outside a test becomes the baseline every test must
find again.

Listed objects are found only in modules already imported (by the tests, or by
the application they import): the blocker imports no application code itself.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from .errors import ConfigurationError, DatabaseBlockedError, message
from .urls import database_identity, render_url

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection, Engine, ExceptionContext

    from .binding import AppObject


@dataclass(frozen=True)
class Blocked:
    """What is running without database access: a test, or a fixture wider than one."""

    nodeid: str
    fixture: str | None = None
    scope: str = "function"
    tearing_down: bool = False

    def subject(self) -> str:
        if self.fixture is None:
            return self.nodeid
        when = "torn down after" if self.tearing_down else "set up for"
        return f"the {self.scope}-scoped fixture {self.fixture} ({when} {self.nodeid})"

    def reason(self) -> str:
        if self.fixture is None:
            return "but the test has neither the alchemy_db marker nor a database fixture"
        return "outside `with alchemy_blocker.unblock():`"

    def remedy(self) -> str:
        if self.fixture is None:
            return (
                "Mark the test @pytest.mark.alchemy_db, or give it a database fixture "
                "(alchemy_session, alchemy_connection, alchemy_engine...), so that it runs "
                "inside the test database; or set alchemy_block_unmarked = false to let tests "
                "without one reach whatever database the app's objects point at."
            )
        return (
            "A fixture wider than a test is outside every test's transaction: make it a layer "
            "of seed data, @pytest_alchemy.layer(scope=...) (what it writes through its "
            "alchemy_session or the app's sessions is seen by every test of its scope and "
            "undone after it); or wrap the code that needs the database in `with "
            "alchemy_blocker.unblock():` (what it commits to the test database there becomes "
            "the baseline every test starts from), or set alchemy_block_unmarked = false."
        )


@dataclass
class _Watched:
    """An engine behind listed objects, and the listeners refusing its connections."""

    engine: Engine
    paths: list[str]
    listeners: list[tuple[str, Callable[..., None]]]
    factories: list[AppObject]

    def bound(self) -> bool:
        """Whether a listed session factory made from this engine is bound to a test now."""
        return any(factory.bound_now() for factory in self.factories)


class Blocker:
    """The database blocker of one run (kept in ``config.stash`` by the plugin)."""

    def __init__(self, paths: Sequence[str]) -> None:
        self._pending = list(paths)
        """Listed paths whose module has not been imported yet."""
        self._factories: list[AppObject] = []
        self._watched: dict[int, _Watched] = {}
        self._listening = False
        self._test_database: tuple[str, str] | None = None
        self._test_database_name = ""
        self._after_write: Callable[[], None] | None = None
        self._unblocked = 0
        self._wrote = False
        self.current: Blocked | None = None
        """What runs now without database access, or None: everything is allowed."""
        self.database_test: str | None = None
        """The database test running now: the app's engines may reach only the test
        database."""
        self.violation: str | None = None
        """The first refusal since it was last taken, for the hooks to fail the test."""
        self.collected = False
        """Whether pytest has collected the tests: before, only the app's code connects
        (the test database is made later, at the first database test)."""

    # -- state ---------------------------------------------------------------------

    @property
    def blocking(self) -> bool:
        return self.current is not None and self._unblocked == 0

    def enter(self, blocked: Blocked | None) -> Blocked | None:
        """Run what comes next as ``blocked`` (None: allowed); returns the previous state."""
        previous, self.current = self.current, blocked
        if blocked is not None:
            self._arm()
        return previous

    def take_violation(self) -> str | None:
        found, self.violation = self.violation, None
        return found

    @contextmanager
    def unblock(self) -> Iterator[None]:
        """Allow database access in the ``with`` block.

        The listed objects then reach the database their own engines point at (the
        application's real database, unless your configuration points them at the
        test database). What the block commits to the test database outside a test
        becomes the baseline: every later test starts from it, and the leak check
        puts it back.
        """
        self._unblocked += 1
        try:
            yield
        finally:
            try:
                if self._unblocked == 1 and self._wrote:
                    self._wrote = False
                    if self._after_write is not None:
                        self._after_write()
            finally:
                self._unblocked -= 1

    def watch_test_database(self, url: URL, name: str, after_write: Callable[[], None]) -> None:
        """Refuse connections to the test database at ``url`` too; ``after_write`` runs
        (still unblocked) when an unblocked block outside a test connected to it."""
        self._test_database = database_identity(url)
        self._test_database_name = name
        self._after_write = after_write
        self._arm()

    def close(self) -> None:
        """Remove every listener (at the end of the run)."""
        if not self._listening:
            return
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        for watched in self._watched.values():
            for name, listener in watched.listeners:
                if event.contains(watched.engine, name, listener):
                    event.remove(watched.engine, name, listener)
        self._watched.clear()
        if event.contains(Engine, "engine_connect", self._on_engine_connect):
            event.remove(Engine, "engine_connect", self._on_engine_connect)
        if event.contains(Engine, "handle_error", self._on_connect_error):
            event.remove(Engine, "handle_error", self._on_connect_error)
        self._listening = False

    # -- finding the objects to watch ------------------------------------------------

    def _arm(self) -> None:
        """Listen on every engine behind the listed objects imported so far."""
        if "sqlalchemy" not in sys.modules:
            return  # nothing can connect without it; imported later, the next test arms
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        if not self._listening:
            event.listen(Engine, "engine_connect", self._on_engine_connect)
            event.listen(Engine, "handle_error", self._on_connect_error)
            self._listening = True
        self._resolve_imported()
        for factory in self._factories:
            for engine in factory.engines():
                self._watch(engine, factory)

    def _resolve_imported(self) -> None:
        if not self._pending:
            return
        from .binding import resolve

        for path in list(self._pending):
            if _module_of(path) not in sys.modules:
                continue
            self._pending.remove(path)
            # A path that cannot be resolved has nothing to watch: the first database
            # test reports it.
            with contextlib.suppress(ConfigurationError):
                self._factories.extend(resolve([path]))

    def _watch(self, engine: Engine, factory: AppObject) -> None:
        watched = self._watched.get(id(engine))
        if watched is not None and watched.engine is engine:
            if factory.path not in watched.paths:
                watched.paths.append(factory.path)
                watched.factories.append(factory)
            return
        from sqlalchemy import event

        watched = _Watched(engine, [factory.path], [], [factory])

        def refuse(*_: Any) -> None:
            if self.blocking:
                self._refuse(self._app_object(watched))
            elsewhere = self._elsewhere(watched)
            if elsewhere is not None:
                self._raise(elsewhere)

        for name in ("do_connect", "checkout"):
            event.listen(engine, name, refuse)
            watched.listeners.append((name, refuse))
        self._watched[id(engine)] = watched

    # -- refusing ----------------------------------------------------------------------

    def _on_engine_connect(self, connection: Connection) -> None:
        """Every engine's new ``Connection``: refuse the test database (and app engines
        whose module was imported only during this test) while blocking."""
        engine = connection.engine
        if self.current is None:
            found = self._watched_for(engine) if self.database_test is not None else None
            elsewhere = self._elsewhere(found) if found is not None else None
            if elsewhere is not None:
                connection.close()
                self._raise(elsewhere)
            return
        on_test_database = database_identity(engine.url) == self._test_database
        if not self.blocking:
            self._wrote = self._wrote or on_test_database
            return
        found = None if on_test_database else self._watched_for(engine)
        if not on_test_database and found is None:
            return
        connection.close()
        if found is not None:
            self._refuse(self._app_object(found))

        name = self._test_database_name
        self._refuse(f"connected to the test database {name} ({render_url(engine.url)})")

    def _on_connect_error(self, context: ExceptionContext) -> None:
        """A connection to the test database that failed while blocking (before the first
        database test made the database, it does not exist yet): refused all the same,
        with the same paragraph, rather than with the driver's error."""
        engine = context.engine
        if context.connection is not None or engine is None:
            return
        if database_identity(engine.url) != self._test_database:
            return
        name = self._test_database_name
        if self.blocking:
            self._refuse(f"connected to the test database {name} ({render_url(engine.url)})")
        if not self.collected:
            self._raise(_before_the_first_test(name, render_url(engine.url)))

    def _watched_for(self, engine: Engine) -> _Watched | None:
        self._arm()
        for watched in self._watched.values():
            if watched.engine.pool is engine.pool:
                return watched
        return None

    def _app_object(self, watched: _Watched) -> str:
        return (
            f"used {' / '.join(watched.paths)} (listed in alchemy_app_sessions; its engine is "
            f"{render_url(watched.engine.url)})"
        )

    def _elsewhere(self, watched: _Watched) -> str | None:
        """In a database test: why a connection of an app engine that does not lead to the
        test database is refused; None when it is allowed."""
        nodeid = self.database_test
        if nodeid is None or self._unblocked or self.current is not None:
            return None
        if database_identity(watched.engine.url) == self._test_database:
            return None
        where = render_url(watched.engine.url)
        if not watched.bound():
            why = (
                "the application's own database: they are bound to the test's connection only "
                "once the test's database fixture is set up, and this ran before. Ask for a "
                "database fixture (alchemy_session, alchemy_async_session, alchemy_connection"
                "...) in the fixture that uses them, so that it is set up first."
            )
        else:
            paths = " ".join(watched.paths)
            engine_path = _engine_path(watched) or "myapp.db:engine"
            why = (
                f"which is not the test database {self._test_database_name}: the listed "
                "session factories are bound to the test's connection, the engine they were "
                "made from is not. List that engine too (alchemy_app_sessions = "
                f"{paths} {engine_path}) so that its connections join the test's "
                "transaction, or use alchemy_engine / alchemy_async_engine in the test."
            )
        return message(
            f"{nodeid} opened a connection of the engine behind {' / '.join(watched.paths)} "
            f"({where}), {why} pytest-alchemy refused the connection and nothing was sent."
        )

    def _refuse(self, what: str) -> NoReturn:
        blocked = self.current
        assert blocked is not None
        self._raise(
            message(
                f"{blocked.subject()} {what}, {blocked.reason()}, so pytest-alchemy refused the "
                f"connection and nothing was sent. {blocked.remedy()}"
            )
        )

    def _raise(self, text: str) -> NoReturn:
        if self.violation is None:
            self.violation = text
        raise DatabaseBlockedError(text)


def _before_the_first_test(name: str, where: str) -> str:
    """Why code that ran before the tests (importing the app while pytest collects them)
    could not reach the test database."""
    return message(
        f"Code that ran before the tests (most often at import, while pytest collected "
        f"them) connected to the test database {name} ({where}) before pytest-alchemy "
        "made it: the test database is created when the first database test starts. Move "
        "what the app does to the database at import (db.create_all() next to a "
        "module-level app, a query in a settings module) into an app factory or a "
        "start-up handler: pytest-alchemy builds the schema itself from alchemy_metadata, "
        "and calls a Flask factory named in alchemy_flask_app once the database exists."
    )


def _module_of(path: str) -> str:
    module, _, attribute = path.partition(":")
    return module if attribute else path.rpartition(".")[0]


def _engine_path(watched: _Watched) -> str | None:
    """Where the application keeps ``watched``'s engine: a name in a listed object's module."""
    for path in watched.paths:
        module = sys.modules.get(_module_of(path))
        if module is None:
            continue
        for name, value in vars(module).items():
            if value is watched.engine or getattr(value, "sync_engine", None) is watched.engine:
                return f"{module.__name__}:{name}"
    return None
