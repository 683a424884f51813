"""The engines pytest-alchemy makes.

Engines are pooled: a test's connection goes back to the pool after the test
and is reset before the next one (see ``isolation.cycle``), which costs far
less than a new connection per test. Every engine gets its backend's connect
set-up (lock timeout in the startup packet, SQLite's transaction fix). The
options it refuses to pass on are in ``refusals``.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import URL, Engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import SingletonThreadPool, StaticPool

from .provision import Provisioner
from .refusals import check_engine_options

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

ECHO_LOGGER = "sqlalchemy.engine.Engine"
"""The logger SQLAlchemy's ``echo`` writes statements to (sync and async engines alike)."""

ASYNC_REJECTED = frozenset({"poolclass", "pool", "creator", "module"})
"""Sync engine options that async engines do not take (dropped from the async default)."""


def sqlmodel_tables() -> bool:
    """Whether the app's tables are SQLModel's: sqlmodel is imported and its metadata
    holds tables."""
    sqlmodel = sys.modules.get("sqlmodel")
    metadata = getattr(getattr(sqlmodel, "SQLModel", None), "metadata", None)
    return isinstance(metadata, MetaData) and bool(metadata.tables)


def sqlmodel_session_class(*, is_async: bool) -> type[Any] | None:
    """SQLModel's session class (with ``exec()``), its async one with ``is_async``; None
    where it cannot be imported (the async one needs greenlet)."""
    if not is_async:
        from sqlmodel import Session as SQLModelSession

        return SQLModelSession
    try:
        from sqlmodel.ext.asyncio.session import AsyncSession as SQLModelAsyncSession
    except ImportError:  # pragma: no cover - no greenlet: no async session at all
        return None
    return SQLModelAsyncSession


def sync_session_options(options: Mapping[str, Any], *, sqlmodel: bool = False) -> dict[str, Any]:
    """``alchemy_session_options`` for sync sessions.

    A ``class_`` that is an ``AsyncSession`` subclass (SQLModel's, say) stands for the
    sync session class it wraps, so one setting serves sync and async tests. With
    ``sqlmodel`` (the app's tables are SQLModel's) and no ``class_`` given, sessions are
    ``sqlmodel.Session``, whose ``exec()`` the app's code calls.
    """
    found = dict(options)
    chosen = found.get("class_")
    wrapped = getattr(chosen, "sync_session_class", None)
    if isinstance(chosen, type) and not issubclass(chosen, Session) and wrapped is not None:
        found["class_"] = wrapped
    if sqlmodel and "class_" not in found:
        found["class_"] = sqlmodel_session_class(is_async=False)
    return found


def async_session_options(options: Mapping[str, Any], *, sqlmodel: bool = False) -> dict[str, Any]:
    """``alchemy_session_options`` for async sessions.

    A ``class_`` that is a sync ``Session`` subclass becomes the ``sync_session_class``
    of the ``AsyncSession`` the test gets, so one setting serves sync and async tests.
    With ``sqlmodel`` and no session class given, sessions are SQLModel's
    ``AsyncSession`` (with ``exec()``).
    """
    found = dict(options)
    if sqlmodel and "class_" not in found and "sync_session_class" not in found:
        chosen_class = sqlmodel_session_class(is_async=True)
        if chosen_class is not None:
            found["class_"] = chosen_class
    chosen = found.get("class_")
    if isinstance(chosen, type) and issubclass(chosen, Session):
        del found["class_"]
        found.setdefault("sync_session_class", chosen)
    return found


def async_defaults(options: Mapping[str, Any]) -> dict[str, Any]:
    """The sync engine options minus what async engines reject."""
    return {key: value for key, value in options.items() if key not in ASYNC_REJECTED}


@contextmanager
def echo_to_logging(enabled: bool) -> Iterator[None]:
    """While the run lasts, let echoed SQL reach the logging system only.

    An engine made with ``echo=True`` adds a handler printing to stdout when its logger
    has none, and the records still propagate to the root logger, where pytest's log
    capture takes them too: every statement would show twice. A handler that drops
    records keeps SQLAlchemy from adding its own, so each statement is shown once, by
    the log capture (live with ``--log-cli-level=INFO``). Without a log capture
    (``enabled`` false) SQLAlchemy's own handler is the only one and stays.
    """
    if not enabled:
        yield
        return
    logger = logging.getLogger(ECHO_LOGGER)
    handler = logging.NullHandler()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def build_sync_engine(
    url: URL, options: Mapping[str, Any], provisioner: Provisioner, *, echo: bool = False
) -> Engine:
    check_engine_options(url, options, origin="alchemy_engine_options")
    kwargs = provisioner.engine_options(url, options)
    if provisioner.lifo_pools and "poolclass" not in kwargs and "pool" not in kwargs:
        kwargs.setdefault("pool_use_lifo", True)
    if echo:
        kwargs["echo"] = True
    engine = create_engine(url, **kwargs)
    provisioner.install_connect_events(engine, kwargs)
    return engine


def build_async_engine(
    url: URL,
    options: Mapping[str, Any],
    provisioner: Provisioner,
    *,
    pooled: bool,
    echo: bool = False,
) -> AsyncEngine:
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool

    check_engine_options(url, options, origin="alchemy_async_engine_options", is_async=True)
    kwargs = provisioner.engine_options(url, options)
    kwargs["poolclass"] = AsyncAdaptedQueuePool if pooled else NullPool
    if pooled and provisioner.lifo_pools:
        kwargs.setdefault("pool_use_lifo", True)
    if not pooled:
        for key in ("pool_size", "max_overflow", "pool_timeout", "pool_use_lifo"):
            kwargs.pop(key, None)
    if echo:
        kwargs["echo"] = True
    engine = create_async_engine(url, **kwargs)
    provisioner.install_connect_events(engine.sync_engine, kwargs)
    return engine


class DatabaseSwitch:
    """One engine without pool for the databases made for single tests (a strategy's
    copies): each connection goes to the database it was pointed at last.

    A new engine per database would initialise its dialect again on its first
    connection (a few queries for the server's version and settings, milliseconds on
    every test); this one does it once. Its ``url`` names the database it points at.
    ``connect_args``: the driver arguments the engine was made with, for :meth:`open`.
    """

    def __init__(self, engine: Engine, connect_args: Mapping[str, Any]) -> None:
        self.engine = engine
        self._connect_args = dict(connect_args)
        initial_args, self._initial = engine.dialect.create_connect_args(engine.url)
        self._initial_args = list(initial_args)
        self._ready: Any = None
        event.listen(engine, "do_connect", self._connect)

    def point(self, url: URL, ready: Any = None) -> Engine:
        """The engine, its connections made from now on to ``url``'s database; the next
        one is ``ready`` (a driver connection opened ahead there by :meth:`open`)."""
        self.engine.url = url
        self._ready = ready
        return self.engine

    def open(self, url: URL, statements: Sequence[str] = ()) -> Any:
        """A driver connection to ``url``'s database as the engine would open it, after
        ``statements`` (run and rolled back: to load the server's caches of the tables
        a test will use, in the background rather than during the test)."""
        dialect = self.engine.dialect
        cargs, cparams = dialect.create_connect_args(url)
        connection = dialect.connect(*cargs, **{**cparams, **self._connect_args})
        try:
            cursor = connection.cursor()
            for statement in statements:
                cursor.execute(statement)
            cursor.close()
            connection.rollback()
        except BaseException:
            connection.close()
            raise
        return connection

    def _connect(self, dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        ready, self._ready = self._ready, None
        if ready is not None:
            return ready
        wanted_args, wanted = dialect.create_connect_args(self.engine.url)
        if list(wanted_args) != self._initial_args:
            cargs[:] = wanted_args  # SQLite: the file is the first argument
        for key, value in wanted.items():
            if self._initial.get(key) != value:
                cparams[key] = value
        return None


class CheckoutTracker:
    """Remembers who checked each connection out of an engine's pool.

    The plugin's own checkouts are cheap to record; any other (test or app code
    calling ``alchemy_engine.connect()``) keeps the code location that opened
    it, so a connection never returned is reported with the line that opened it.
    """

    def __init__(self, engine: Engine) -> None:
        self.own = False
        self.open: dict[int, str] = {}
        event.listen(engine, "checkout", self._checkout)
        event.listen(engine, "checkin", self._checkin)

    def _checkout(self, _dbapi: Any, record: Any, _proxy: Any) -> None:
        self.open[id(record)] = "" if self.own else _caller()

    def _checkin(self, _dbapi: Any, record: Any) -> None:
        self.open.pop(id(record), None)

    def leaked(self) -> list[str]:
        """Where the connections still checked out (other than the plugin's own) were opened."""
        return [where for where in self.open.values() if where]

    def forget(self) -> None:
        self.open = {key: where for key, where in self.open.items() if not where}


def _caller() -> str:
    """The innermost stack frame outside SQLAlchemy, pytest and this plugin."""
    skip = ("sqlalchemy", "_pytest", "pytest_alchemy", "pluggy", "asyncio", "greenlet")
    for frame in reversed(traceback.extract_stack()[:-2]):
        path = frame.filename.replace("\\", "/")
        if not any(f"/{part}/" in path for part in skip):
            return f"{frame.filename}:{frame.lineno} ({frame.name})"
    return "unknown code"


@contextmanager
def pools_emptied() -> Iterator[None]:
    """Leave no pooled connection made in the block: each connection an engine gives
    back in it is closed, and afterwards the pools of the engines that connected are
    emptied.

    Building the schema or checking migrations may go through the app's own engine (an
    Alembic env.py that imports it, a schema hook), whichever database it leads to. A
    connection it kept in its pool would keep ``CREATE DATABASE … TEMPLATE`` from
    copying the database; an async driver's connection belongs to the event loop of the
    ``asyncio.run()`` that made it, which is closed once env.py returns, so the next
    env.py run would fail with "attached to a different loop". Connections given back
    are closed while their loop still runs. The engines stay usable: they open new
    connections when next asked. A pool that holds its one connection for good (an
    in-memory SQLite database) is left alone: closing it would lose the data.
    """
    seen: list[tuple[Engine, Any]] = []

    def close_on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.invalidate()

    def connected(connection: Any) -> None:
        engine = connection.engine
        pool = engine.pool
        if isinstance(pool, (StaticPool, SingletonThreadPool)):
            return
        if any(pool is known for _, known in seen):
            return
        seen.append((engine, pool))
        event.listen(pool, "checkin", close_on_checkin)

    event.listen(Engine, "engine_connect", connected)
    try:
        yield
    finally:
        event.remove(Engine, "engine_connect", connected)
        for engine, pool in seen:
            event.remove(pool, "checkin", close_on_checkin)
            if engine.pool is pool and not engine.dialect.is_async:  # its loop may be gone
                pool.dispose()
