"""advanced-alchemy (Litestar's SQLAlchemy plugin): the plugin's engine and session maker
on the test's connection.

A ``SQLAlchemySyncConfig`` / ``SQLAlchemyAsyncConfig``, or the ``SQLAlchemyPlugin`` /
``SQLAlchemyInitPlugin`` holding them, bound to a test: each config's engine (made now
if the app has not started yet; it never connects on its own) hands out the test's
connection, as the ``Engine`` binder does, so the session maker the plugin builds on it,
the sessions it provides to route handlers (and commits in its ``before_send``
handler) and ``create_all`` at start-up all stay inside the test's transaction. Sync
configs are bound in sync tests, async ones in async tests (``AsyncTestClient`` runs
the app on the test's loop).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, ClassVar

from sqlalchemy.engine import Engine

from .base import Binder, Handle, Requirement
from .sqlalchemy import EngineBinder

ENGINE = EngineBinder()
"""Binds each config's engine."""


def _config_class() -> Any:
    module = sys.modules.get("advanced_alchemy.config.common")
    return getattr(module, "GenericSQLAlchemyConfig", None)


def _configs(target: Any) -> list[Any]:
    config_class = _config_class()
    if config_class is not None and isinstance(target, config_class):
        return [target]
    found = getattr(target, "config", None)
    return list(found) if isinstance(found, (list, tuple)) else []


def _is_async_config(config: Any) -> bool:
    module = sys.modules.get("advanced_alchemy.config.asyncio")
    async_class = getattr(module, "SQLAlchemyAsyncConfig", None)
    return async_class is not None and isinstance(config, async_class)


class AdvancedAlchemyBinder(Binder):
    kind: ClassVar[str] = "an advanced-alchemy config or SQLAlchemyPlugin (Litestar)"
    requires = (Requirement("advanced-alchemy", "0.20"),)

    def accepts(self, target: Any) -> bool:
        config_class = _config_class()
        if config_class is None:
            return False
        configs = _configs(target)
        return bool(configs) and all(isinstance(config, config_class) for config in configs)

    def is_async(self, target: Any) -> bool | None:
        kinds = {_is_async_config(config) for config in _configs(target)}
        return kinds.pop() if len(kinds) == 1 else None

    def engines(self, target: Any) -> list[Engine]:
        return [
            getattr(config.engine_instance, "sync_engine", config.engine_instance)
            for config in _configs(target)
            if config.engine_instance is not None
        ]

    def bind(self, target: Any, handle: Handle) -> Iterator[None]:
        with ExitStack() as stack:
            for config in _configs(target):
                if _is_async_config(config) == handle.is_async:
                    engine = config.get_engine()
                    stack.enter_context(contextmanager(ENGINE.bind)(engine, handle))
            yield
