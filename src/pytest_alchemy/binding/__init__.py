"""Binding the application's own objects to the test's connection.

An app that creates sessions from a global ``sessionmaker`` (FastAPI's
``SessionLocal``, a ``scoped_session``) or opens connections on a global
``Engine`` (``Session(engine)``, ``engine.begin()``) would write to its own
database, outside the test's transaction. Each object listed in
``alchemy_app_sessions`` (or bound at run time with ``alchemy_bind``) is bound by
the binder of its kind (:mod:`.registry`) for the duration of one test, and put
back exactly as it was afterwards, also when the test fails.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..schema import import_object
from .base import AppObject, Binder, Bindings, Handle, bound, classify, close_async
from .joined import JoinedConnection
from .litestar import test_clients_on_this_loop
from .registry import BINDERS

__all__ = [
    "BINDERS",
    "AppObject",
    "Binder",
    "Bindings",
    "Handle",
    "JoinedConnection",
    "bound",
    "classify",
    "close_async",
    "resolve",
    "test_clients_on_this_loop",
]

FACTORY_WANTED = "the session factory or engine your app uses, for example {module}:SessionLocal"


def resolve(
    paths: Sequence[str], overrides: Sequence[str] = (), *, shared: bool = False
) -> list[AppObject]:
    """Import every path of ``alchemy_app_sessions`` and every entry of
    ``alchemy_overrides`` (``shared``: their requests get the test's own session), and
    find the binder of each."""
    from .fastapi import resolve_overrides

    found = []
    for path in paths:
        target = import_object(path, "alchemy_app_sessions", FACTORY_WANTED)
        found.append(classify(path, target, BINDERS))
    for entry, target in zip(overrides, resolve_overrides(overrides, shared=shared), strict=True):
        found.append(classify(entry, target, BINDERS))
    return found
