"""FastAPI (and any app with ``dependency_overrides``): the app's session dependency,
overridden for one test.

``alchemy_override(app, get_db)`` (or ``alchemy_overrides = myapp.main:app=myapp.deps:get_db``)
installs ``app.dependency_overrides[get_db]`` for the test: a dependency that yields a
session like the test's own (``sqlmodel.Session`` for SQLModel apps), on the test's
connection, so that every request the test makes through ``TestClient`` or
``httpx.AsyncClient(transport=ASGITransport(app))`` takes part in the test's
transaction. The engine or sessionmaker the app's lifespan handler creates is never
asked to connect. What the override replaced (nothing, or another override) is put
back after the test, also when it fails.

Each request gets a session of its own, closed when the request ends, as the app's
dependency would give it; with ``shared=True`` (or ``alchemy_override_sessions = shared``)
every request gets the test's own session instead, the one identity map the
hand-written override that returns the test's session gives.

A sync dependency (``def get_db()``) is overridden in sync tests, an async one
(``async def get_db()``) in async tests: an async session lives on the test's event
loop, which ``TestClient``'s own loop is not.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import ConfigurationError, message
from ..schema import import_object
from .base import Binder, Handle, Requirement

OVERRIDES_WANTED = "your FastAPI app, for example {module}:app"
DEPENDENCY_WANTED = "your session dependency, for example {module}:get_db"


@dataclass(frozen=True)
class DependencyOverride:
    """An app, and the dependency of it to override with the test's sessions."""

    app: Any
    dependency: Callable[..., Any]
    shared: bool = False
    """Whether requests get the test's own session rather than one each."""

    def __repr__(self) -> str:
        return f"{_name(self.dependency)} of {type(self.app).__name__}"


def _name(function: Any) -> str:
    module = getattr(function, "__module__", None)
    name = getattr(function, "__qualname__", None) or repr(function)
    return f"{module}:{name}" if module else str(name)


def is_async_dependency(dependency: Any) -> bool:
    """Whether FastAPI awaits ``dependency`` (an ``async def``, or an async generator)."""
    call = dependency if inspect.isfunction(dependency) else getattr(dependency, "__call__", None)  # noqa: B004
    return inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)


def _dependencies(app: Any) -> Iterator[Callable[..., Any]]:
    """Every dependency the app's routes (and the app and its routers) call, however deep:
    routes of included routers too, which FastAPI keeps either copied into the app's
    routes or (newer versions) behind one entry per ``include_router``."""
    dependants: list[Any] = []
    depends: list[Any] = []
    routers = [getattr(app, "router", app)]
    while routers:
        router = routers.pop()
        depends.extend(getattr(router, "dependencies", None) or ())
        for route in getattr(router, "routes", None) or ():
            included = getattr(route, "original_router", None)
            if included is not None:
                routers.append(included)
                context = getattr(route, "include_context", None)
                depends.extend(getattr(context, "dependencies", None) or ())
            dependant = getattr(route, "dependant", None)
            if dependant is not None:
                dependants.append(dependant)
    for each in depends:
        call = getattr(each, "dependency", None)
        if call is not None:
            yield call
    while dependants:
        dependant = dependants.pop()
        call = getattr(dependant, "call", None)
        if call is not None:
            yield call
        dependants.extend(getattr(dependant, "dependencies", None) or ())


def override(
    app: Any, dependency: Any, *, subject: str, shared: bool = False
) -> DependencyOverride:
    """``app`` and ``dependency`` checked: the app takes overrides, the dependency is
    one its routes use; else one paragraph saying what was expected."""
    if not isinstance(getattr(app, "dependency_overrides", None), dict):
        raise ConfigurationError(
            message(
                f"{subject}: {app!r} is not a FastAPI app (it has no dependency_overrides). "
                "Give the FastAPI() object your tests send requests to, and the dependency "
                "its routes get their session from, for example alchemy_override(app, get_db)."
            )
        )
    if not callable(dependency):
        raise ConfigurationError(
            message(
                f"{subject}: {dependency!r} is not a dependency (not callable). Give the "
                "function the app's routes depend on for their session, such as get_db."
            )
        )
    used = list(_dependencies(app))
    if dependency not in used:
        known = sorted({_name(call) for call in used if inspect.isfunction(call)})
        listed = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
        routes = (
            f"the app's routes depend on {listed}."
            if listed
            else "the app has no routes yet: import the modules that add them first."
        )
        raise ConfigurationError(
            message(
                f"{subject}: no route of the app depends on {_name(dependency)}, so "
                "overriding it would change nothing. Give the dependency the routes use "
                f"for their session (Depends(get_db)); {routes}"
            )
        )
    return DependencyOverride(app, dependency, shared)


def resolve_overrides(entries: Sequence[str], *, shared: bool = False) -> list[DependencyOverride]:
    """The ``alchemy_overrides`` entries (``myapp.main:app=myapp.deps:get_db``), imported;
    ``shared``: their requests get the test's own session."""
    found = []
    for entry in entries:
        app_path, equals, dependency_path = entry.partition("=")
        if not equals or not app_path or not dependency_path:
            raise ConfigurationError(
                message(
                    f"alchemy_overrides = {entry!r} is not APP=DEPENDENCY. Write the app's "
                    "import path, '=', and the session dependency's, for example "
                    "myapp.main:app=myapp.deps:get_db."
                )
            )
        app = import_object(app_path, "alchemy_overrides", OVERRIDES_WANTED)
        dependency = import_object(
            dependency_path,
            "alchemy_overrides",
            "your session dependency, for example {module}:get_db",
        )
        subject = f"alchemy_overrides = {entry!r}"
        found.append(override(app, dependency, subject=subject, shared=shared))
    return found


class DependencyOverrideBinder(Binder):
    kind: ClassVar[str] = "a FastAPI dependency (alchemy_override(app, get_db))"
    requires = (Requirement("fastapi", "0.100"),)

    def accepts(self, target: Any) -> bool:
        return isinstance(target, DependencyOverride)

    def is_async(self, target: Any) -> bool | None:
        return is_async_dependency(target.dependency)

    def bind(self, target: Any, handle: Handle) -> Iterator[None]:
        overrides: dict[Any, Any] = target.app.dependency_overrides
        dependency = target.dependency
        had = dependency in overrides
        previous = overrides.get(dependency)
        overrides[dependency] = _shared(handle) if target.shared else _per_request(handle)
        try:
            yield
        finally:
            if had:
                overrides[dependency] = previous
            else:
                overrides.pop(dependency, None)


def _per_request(handle: Handle) -> Callable[[], Any]:
    """A dependency that gives every request a session of its own on the test's
    connection, closed at the request's end (see :func:`_clean`)."""
    maker = _watched_sessionmaker(handle)
    if handle.is_async:

        async def provide_async() -> AsyncIterator[Any]:
            async with maker() as session:
                yield session
                if _clean(session.sync_session):
                    await session.commit()

        return provide_async

    def provide_sync() -> Iterator[Any]:
        with maker() as session:
            yield session
            if _clean(session):
                session.commit()

    return provide_sync


def _shared(handle: Handle) -> Callable[[], Any]:
    """A dependency that gives every request the test's own session, left open."""
    if handle.is_async:

        async def provide_async() -> Any:
            return handle.session()

        return provide_async

    def provide_sync() -> Any:
        return handle.session()

    return provide_sync


WROTE = "_alchemy_wrote"
"""Set on a request's session while its current transaction has flushed anything."""


def _wrote(session: Any, *_: Any) -> None:
    setattr(session, WROTE, True)


def _ended(session: Any, *_: Any) -> None:
    setattr(session, WROTE, False)


def _watched_sessionmaker(handle: Handle) -> Any:
    """The test's sessionmaker for one binding, its sessions watched for writes.

    The listeners go on a session class of this binding's own (a sessionmaker's
    ``class_``, or a subclass of an async one's ``sync_session_class``), once: listening
    on each request's session would cost more than the request's own statements.
    """
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    maker = handle.sessionmaker()
    target: Any = maker
    if handle.is_async:
        base = maker.kw.get("sync_session_class") or Session
        target = type(base.__name__, (base,), {})
        maker.kw["sync_session_class"] = target
    event.listen(target, "after_flush", _wrote)
    event.listen(target, "after_commit", _ended)
    event.listen(target, "after_rollback", _ended)
    return maker


def _clean(session: Any) -> bool:
    """Whether the request's session holds a savepoint with nothing of its own in it.

    Its sessions share the test's connection, where savepoints nest: a background task
    that committed while the request's session was still open (FastAPI runs them before
    the dependency's exit) released its savepoint inside the request's. Closing the
    session would roll that back too; releasing its empty savepoint keeps the task's
    work, as the app's own connections would.
    """
    return bool(
        session.in_transaction()
        and not getattr(session, WROTE, False)
        and not (session.new or session.dirty or session.deleted)
    )
