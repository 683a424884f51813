"""Rebinding the application's own session factories to the test's connection.

An app that creates sessions from a global ``sessionmaker`` (FastAPI's
``SessionLocal``, a ``scoped_session``) would write to its own database,
outside the test's transaction. Listed in ``alchemy_app_sessions``, each such
factory is bound to the test's connection, with the same
``join_transaction_mode`` as the plugin's own sessions, for the duration of
one test, and restored exactly as it was afterwards, also when the test fails.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import scoped_session, sessionmaker

from .errors import ConfigurationError, message
from .schema import import_object


@dataclass(frozen=True)
class AppFactory:
    path: str
    factory: Any
    """The sessionmaker / async_sessionmaker to rebind."""
    scoped: Any = None
    """The scoped_session around it, whose current session is removed around each test."""
    is_async: bool = False


FACTORY_WANTED = (
    "the session factory your app creates its sessions from, for example {module}:SessionLocal"
)


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
        raise _engine_error(path)
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
        raise _engine_error(path)
    raise _not_a_factory(path, target)


def _engine_error(path: str) -> ConfigurationError:
    return ConfigurationError(
        message(
            f"alchemy_app_sessions = {path!r} is an engine. pytest-alchemy rebinds session "
            "factories: list the sessionmaker, async_sessionmaker or scoped_session your "
            "app creates its sessions from."
        )
    )


def _not_a_factory(path: str, target: Any) -> ConfigurationError:
    return ConfigurationError(
        message(
            f"alchemy_app_sessions = {path!r} is {type(target).__name__}, not a sessionmaker, "
            "async_sessionmaker or scoped_session. List the session factory your app creates "
            "its sessions from, for example myapp.db:SessionLocal."
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
    """Bind the sync (or async) factories to ``connection`` for the block; restore after."""
    chosen = [factory for factory in factories if factory.is_async == is_async]
    saved = []
    try:
        for item in chosen:
            kw = item.factory.kw
            saved.append((item, dict(kw)))
            _remove(item)
            kw.pop("binds", None)
            kw.update(options)
            kw["bind"] = connection
        yield
    finally:
        for item, kw in reversed(saved):
            _remove(item)
            item.factory.kw.clear()
            item.factory.kw.update(kw)


def _remove(item: AppFactory) -> None:
    if item.scoped is None:
        return
    registry = item.scoped.registry
    if registry.has():
        session = registry()
        if not item.is_async:
            session.close()
        registry.clear()
