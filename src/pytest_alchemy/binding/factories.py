"""Test-data factories: factory_boy's ``SQLAlchemyModelFactory`` and polyfactory's
``SQLAlchemyFactory``, writing through the test's own session.

A factory class bound to a test (listed in ``alchemy_app_sessions``, or given to
``alchemy_bind``) and every factory derived from it create their rows through the
test's session (``alchemy_session``; ``alchemy_async_session`` for polyfactory's async
creation in async tests), whatever their ``sqlalchemy_session_persistence``: a factory's
``commit()`` is the test's savepoint's, undone with the test. What each class had is put
back after the test.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any, ClassVar

from .base import Binder, Handle, Requirement, saved_attributes


def _family(target: type[Any]) -> list[type[Any]]:
    """``target`` and every class derived from it."""
    found: list[type[Any]] = []
    pending = [target]
    while pending:
        cls = pending.pop()
        if cls not in found:
            found.append(cls)
            pending.extend(cls.__subclasses__())
    return found


def _subclass_of(target: Any, module: str, name: str) -> bool:
    base = getattr(sys.modules.get(module), name, None)
    return isinstance(target, type) and base is not None and issubclass(target, base)


class FactoryBoyBinder(Binder):
    kind: ClassVar[str] = "a factory_boy SQLAlchemyModelFactory"
    requires = (Requirement("factory-boy", "3.3"),)

    def accepts(self, target: Any) -> bool:
        return _subclass_of(target, "factory.alchemy", "SQLAlchemyModelFactory")

    def bind(self, target: Any, handle: Handle) -> Iterator[None]:
        session = handle.session()
        with ExitStack() as stack:
            for cls in _family(target):
                meta = cls._meta
                names = ["sqlalchemy_session", "sqlalchemy_session_factory"]
                saved = {name: getattr(meta, name, None) for name in names}
                stack.callback(_restore_meta, meta, saved)
                meta.sqlalchemy_session_factory = None
                meta.sqlalchemy_session = session
            yield


def _restore_meta(meta: Any, saved: dict[str, Any]) -> None:
    for name, value in saved.items():
        setattr(meta, name, value)


class PolyfactoryBinder(Binder):
    kind: ClassVar[str] = "a polyfactory SQLAlchemyFactory"
    requires = (Requirement("polyfactory", "2.15"),)

    def accepts(self, target: Any) -> bool:
        return _subclass_of(target, "polyfactory.factories.sqlalchemy_factory", "SQLAlchemyFactory")

    def is_async(self, target: Any) -> bool | None:
        return None  # create_sync() in sync tests, create_async() in async ones

    def bind(self, target: Any, handle: Handle) -> Iterator[None]:
        name = "__async_session__" if handle.is_async else "__session__"
        session = handle.session()
        with ExitStack() as stack:
            for cls in _family(target):
                if cls is target or name in vars(cls):
                    stack.callback(saved_attributes(cls, [name]))
                    setattr(cls, name, session)
            yield
