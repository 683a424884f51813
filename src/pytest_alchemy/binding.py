"""Rebinding the application's own session factories and engines to the test's connection.

An app that creates sessions from a global ``sessionmaker`` (FastAPI's
``SessionLocal``, a ``scoped_session``) or opens connections on a global
``Engine`` (``Session(engine)``, ``engine.begin()``) would write to its own
database, outside the test's transaction. Listed in ``alchemy_app_sessions``:

* each session factory is bound to the test's connection, with the same
  ``join_transaction_mode`` as the plugin's own sessions;
* each engine (``Engine``, or an ``AsyncEngine`` through its sync engine) hands
  out the test's connection from ``connect()``, wrapped so that what the app
  means as a transaction is a savepoint inside the test's: the app's commits
  are visible to the rest of the test and undone at its end, the app closing
  its connection leaves the test's open.

Both for the duration of one test, and restored exactly as they were
afterwards, also when the test fails.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import scoped_session, sessionmaker

from .errors import ConfigurationError, message
from .schema import import_object


@dataclass(frozen=True)
class AppFactory:
    path: str
    factory: Any
    """The sessionmaker / async_sessionmaker to rebind, or None for an engine."""
    scoped: Any = None
    """The scoped_session around it, whose current session is removed around each test."""
    is_async: bool = False
    engine: Engine | None = None
    """The engine (an AsyncEngine's sync engine) whose connections become the test's."""


FACTORY_WANTED = "the session factory or engine your app uses, for example {module}:SessionLocal"


def resolve(paths: Sequence[str]) -> list[AppFactory]:
    """Import every path of ``alchemy_app_sessions`` and check it can be rebound."""
    found = []
    for path in paths:
        target = import_object(path, "alchemy_app_sessions", FACTORY_WANTED)
        found.append(_classify(path, target))
    return found


def _classify(path: str, target: Any) -> AppFactory:
    if isinstance(target, sessionmaker):
        return AppFactory(path, target)
    if isinstance(target, scoped_session):
        return AppFactory(path, _factory_of(path, target), scoped=target)
    if isinstance(target, Engine):
        return AppFactory(path, None, engine=target)
    try:
        # Imported only here: without greenlet the asyncio extension cannot be imported.
        from sqlalchemy.ext.asyncio import AsyncEngine, async_scoped_session, async_sessionmaker
    except ImportError:
        raise _not_a_factory(path, target) from None
    if isinstance(target, async_sessionmaker):
        return AppFactory(path, target, is_async=True)
    if isinstance(target, async_scoped_session):
        return AppFactory(path, _factory_of(path, target), scoped=target, is_async=True)
    if isinstance(target, AsyncEngine):
        return AppFactory(path, None, is_async=True, engine=target.sync_engine)
    raise _not_a_factory(path, target)


def _not_a_factory(path: str, target: Any) -> ConfigurationError:
    return ConfigurationError(
        message(
            f"alchemy_app_sessions = {path!r} is {type(target).__name__}, not a sessionmaker, "
            "async_sessionmaker, scoped_session or engine. List the session factory or engine "
            "your app uses, for example myapp.db:SessionLocal."
        )
    )


def _factory_of(path: str, scoped: Any) -> Any:
    factory = scoped.session_factory
    if not hasattr(factory, "kw"):
        raise ConfigurationError(
            message(
                f"alchemy_app_sessions = {path!r} is a scoped session whose factory is not a "
                "sessionmaker, so it cannot be rebound. Build it from a sessionmaker."
            )
        )
    return factory


@contextmanager
def bound(
    factories: Sequence[AppFactory], connection: Any, *, is_async: bool, options: dict[str, Any]
) -> Iterator[None]:
    """Bind the sync (or async) factories and engines to ``connection`` for the block.

    ``connection`` is the test's ``Connection`` or ``AsyncConnection``; everything
    is restored afterwards.
    """
    chosen = [factory for factory in factories if factory.is_async == is_async]
    saved: list[tuple[AppFactory, dict[str, Any]]] = []
    try:
        for item in chosen:
            if item.engine is not None:
                saved.append((item, dict(vars(item.engine))))
                item.engine.connect = _joined(item.engine, connection)  # type: ignore[method-assign]
                continue
            kw = item.factory.kw
            saved.append((item, dict(kw)))
            _remove(item)
            kw.pop("binds", None)
            kw.update(options)
            kw["bind"] = connection
        yield
    finally:
        for item, kw in reversed(saved):
            if item.engine is not None:
                if "connect" in kw:  # pragma: no cover - an engine patched by someone else
                    item.engine.connect = kw["connect"]
                else:
                    del item.engine.connect
                continue
            _remove(item)
            item.factory.kw.clear()
            item.factory.kw.update(kw)


def _joined(engine: Engine, connection: Any) -> Any:
    sync = getattr(connection, "sync_connection", None) or connection

    def connect() -> JoinedConnection:
        return JoinedConnection(engine, sync)

    return connect


class JoinedConnection:
    """What an app engine's ``connect()`` returns during a test: the test's connection.

    The app's transactions on it are savepoints inside the test's transaction
    (begun on first use, like a connection's own autobegin); ``commit()`` releases
    the savepoint, ``rollback()`` and ``close()`` roll it back, and ``close()``
    leaves the test's connection open. Its ``engine`` is still the app's (sessions
    find their connection by it); everything else is the test's connection.
    """

    def __init__(self, engine: Engine, connection: Connection) -> None:
        self.engine = engine
        self._connection = connection
        self._transaction: Any = None
        self._closed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    def __repr__(self) -> str:
        return f"<JoinedConnection of {self._connection!r}>"

    def __enter__(self) -> JoinedConnection:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed or self._connection.closed

    def in_transaction(self) -> bool:
        return self._transaction is not None and self._transaction.is_active

    def get_transaction(self) -> Any:
        return self._transaction if self.in_transaction() else None

    def begin(self) -> Any:
        if self.in_transaction():
            raise InvalidRequestError(
                "This connection has already initialized a SQLAlchemy Transaction() object "
                "via begin() or autobegin; can't call begin() here unless rollback() or "
                "commit() is called first."
            )
        self._transaction = self._connection.begin_nested()
        return self._transaction

    def _autobegin(self) -> None:
        if not self.in_transaction():
            self.begin()

    def begin_nested(self) -> Any:
        self._autobegin()
        return self._connection.begin_nested()

    def commit(self) -> None:
        if self.in_transaction():
            self._transaction.commit()
        self._transaction = None

    def rollback(self) -> None:
        if self.in_transaction():
            self._transaction.rollback()
        self._transaction = None

    def close(self) -> None:
        self.rollback()
        self._closed = True

    def execution_options(self, **options: Any) -> JoinedConnection:
        # A Connection applies them to itself and returns itself: so does this one, or a
        # Session given options would go on with the test's connection, whose
        # transaction it would then commit.
        self._connection.execution_options(**options)
        return self

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        self._autobegin()
        return self._connection.execute(*args, **kwargs)

    def exec_driver_sql(self, *args: Any, **kwargs: Any) -> Any:
        self._autobegin()
        return self._connection.exec_driver_sql(*args, **kwargs)

    def scalar(self, *args: Any, **kwargs: Any) -> Any:
        self._autobegin()
        return self._connection.scalar(*args, **kwargs)

    def scalars(self, *args: Any, **kwargs: Any) -> Any:
        self._autobegin()
        return self._connection.scalars(*args, **kwargs)


def _remove(item: AppFactory) -> None:
    if item.scoped is None:
        return
    registry = item.scoped.registry
    if registry.has():
        session = registry()
        if not item.is_async:
            session.close()
        registry.clear()
