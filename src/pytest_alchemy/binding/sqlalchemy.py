"""SQLAlchemy's own objects: session factories, scoped sessions and engines.

* a ``sessionmaker`` / ``async_sessionmaker`` is bound to the test's connection,
  with the same ``join_transaction_mode`` as the plugin's own sessions;
* a ``scoped_session`` / ``async_scoped_session``: its factory likewise, and its
  current session removed before and after the test;
* an ``Engine`` (or an ``AsyncEngine``, through its sync engine) hands out the
  test's connection from ``connect()``, wrapped so that what the app means as a
  transaction is a savepoint inside the test's (:class:`JoinedConnection`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import scoped_session, sessionmaker

from ..errors import ConfigurationError, message
from .base import Binder, Handle, saved_attributes
from .joined import JoinedConnection


def _asyncio() -> Any:
    """SQLAlchemy's asyncio extension, or None (it cannot be imported without greenlet)."""
    try:
        import sqlalchemy.ext.asyncio as found
    except ImportError:  # pragma: no cover - greenlet is a dependency of the test suite
        return None
    return found


def _is_async_factory(target: Any) -> bool:
    found = _asyncio()
    return found is not None and isinstance(target, found.async_sessionmaker)


def _engines_of_factory(factory: Any) -> list[Engine]:
    kw = factory.kw
    found = []
    for bind in [kw.get("bind"), *(kw.get("binds") or {}).values()]:
        if hasattr(bind, "sync_connection"):
            continue  # bound to a test's connection right now, not to the app's engine
        engine = getattr(bind, "sync_engine", bind)  # an AsyncEngine's sync engine
        if isinstance(engine, Engine):
            found.append(engine)
    return found


def _bound_to_a_test(factory: Any) -> bool:
    bind = factory.kw.get("bind")
    return isinstance(getattr(bind, "sync_connection", bind), Connection)


def _rebind(factory: Any, handle: Handle) -> Iterator[None]:
    kw = factory.kw
    saved = dict(kw)
    try:
        kw.pop("binds", None)
        kw.update(handle.join_options)
        kw["bind"] = handle.connection
        yield
    finally:
        kw.clear()
        kw.update(saved)


class SessionmakerBinder(Binder):
    kind: ClassVar[str] = "a sessionmaker or async_sessionmaker"

    def accepts(self, target: Any) -> bool:
        return isinstance(target, sessionmaker) or _is_async_factory(target)

    def is_async(self, target: Any) -> bool | None:
        return _is_async_factory(target)

    def engines(self, target: Any) -> list[Engine]:
        return _engines_of_factory(target)

    def bound_now(self, target: Any) -> bool:
        return _bound_to_a_test(target)

    def bind(self, target: Any, handle: Handle) -> Iterator[None]:
        yield from _rebind(target, handle)


class ScopedSessionBinder(Binder):
    kind: ClassVar[str] = "a scoped_session or async_scoped_session"

    def accepts(self, target: Any) -> bool:
        found = _asyncio()
        return isinstance(target, scoped_session) or (
            found is not None and isinstance(target, found.async_scoped_session)
        )

    def check(self, path: str, target: Any) -> None:
        if not hasattr(target.session_factory, "kw"):
            raise ConfigurationError(
                message(
                    f"alchemy_app_sessions = {path!r} is a scoped session whose factory is not "
                    "a sessionmaker, so it cannot be rebound. Build it from a sessionmaker."
                )
            )

    def is_async(self, target: Any) -> bool | None:
        return not isinstance(target, scoped_session)

    def engines(self, target: Any) -> list[Engine]:
        return _engines_of_factory(target.session_factory)

    def bound_now(self, target: Any) -> bool:
        return _bound_to_a_test(target.session_factory)

    def bind(self, target: Any, handle: Handle) -> Iterator[None]:
        _remove(target, handle.is_async)
        try:
            yield from _rebind(target.session_factory, handle)
        finally:
            _remove(target, handle.is_async)

    async def close_async(self, target: Any) -> None:
        await target.remove()


def _remove(target: Any, is_async: bool) -> None:
    """Forget the scoped session's current session (closed first, where it can be)."""
    registry = target.registry
    if registry.has():
        session = registry()
        if not is_async:
            session.close()
        registry.clear()


class EngineBinder(Binder):
    kind: ClassVar[str] = "an Engine or AsyncEngine"

    def accepts(self, target: Any) -> bool:
        found = _asyncio()
        return isinstance(target, Engine) or (
            found is not None and isinstance(target, found.AsyncEngine)
        )

    def is_async(self, target: Any) -> bool | None:
        return not isinstance(target, Engine)

    def engines(self, target: Any) -> list[Engine]:
        engine: Engine = getattr(target, "sync_engine", target)
        return [engine]

    def bind(self, target: Any, handle: Handle) -> Iterator[None]:
        engine: Engine = getattr(target, "sync_engine", target)
        connection = handle.sync_connection
        restore = saved_attributes(engine, ["connect"])

        def connect() -> JoinedConnection:
            joined = JoinedConnection(engine, connection)
            if engine.dialect.server_version_info is None:
                # The app's engine never connected: its dialect learns the server as a
                # first connect would teach it (reflection on the app's connections reads
                # it). Called where the app connects: inside a greenlet in async code.
                engine.dialect.initialize(joined)
                joined.rollback()  # as a first connect ends: the app begins afresh
            return joined

        engine.connect = connect  # type: ignore[method-assign]
        try:
            yield
        finally:
            restore()
