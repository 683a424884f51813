"""What binding an app object to a test means, whatever the object.

A :class:`Binder` knows one kind of object (a ``sessionmaker``, an ``Engine``, a
framework's extension...): whether it accepts an object, whether the object
serves sync or async tests, which of the app's engines it connects through (for
the blocker), and how to bind it to a test's connection for the duration of a
``with`` block, putting back exactly what it changed afterwards, also when the
test fails. :func:`classify` finds the binder of an object among
:data:`~pytest_alchemy.binding.registry.BINDERS`; :func:`bound` binds a list of
them to one test.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ConfigurationError, message

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine


@dataclass(frozen=True)
class Handle:
    """One test's connection, as binders see it."""

    connection: Any
    """The test's ``Connection`` (sync tests) or ``AsyncConnection`` (async tests)."""
    is_async: bool
    join_options: Mapping[str, Any] = field(default_factory=dict)
    """The session options that keep a session inside the test's isolation
    (``join_transaction_mode``): given to every session factory bound to it."""
    session_options: Mapping[str, Any] = field(default_factory=dict)
    """Everything the test's own sessions get (the session class included), for the
    sessions a binder makes itself."""
    shared_session: Callable[[], Any] | None = None
    """The test's own session (``alchemy_session``, or ``alchemy_async_session`` in async
    tests), made on first use: what binders hand to code that takes a session object."""

    def session(self) -> Any:
        """The test's own session (a new one like it where the test has none to share)."""
        if self.shared_session is not None:
            return self.shared_session()
        return self.sessionmaker()()

    @property
    def sync_connection(self) -> Connection:
        found: Connection = getattr(self.connection, "sync_connection", None) or self.connection
        return found

    def sessionmaker(self) -> Any:
        """A sessionmaker (an ``async_sessionmaker`` in async tests) of sessions like the
        test's own, on its connection."""
        options = {**self.session_options, **self.join_options}
        if self.is_async:
            from sqlalchemy.ext.asyncio import async_sessionmaker

            return async_sessionmaker(bind=self.connection, **options)
        from sqlalchemy.orm import sessionmaker

        return sessionmaker(bind=self.connection, **options)


@dataclass(frozen=True)
class Requirement:
    """The oldest release of a framework a binder supports."""

    distribution: str
    minimum: str

    def check(self, path: str) -> None:
        """Raise :class:`ConfigurationError` naming ``path`` when an older release is
        installed."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            installed = version(self.distribution)
        except PackageNotFoundError:  # imported from where pip does not know: say nothing
            return
        if _release(installed) < _release(self.minimum):
            raise ConfigurationError(
                message(
                    f"{path} comes from {self.distribution} {installed}; pytest-alchemy binds "
                    f"it from {self.distribution} {self.minimum} on. Upgrade it: pip install "
                    f"'{self.distribution}>={self.minimum}'."
                )
            )


def _release(text: str) -> tuple[int, ...]:
    """The release numbers a version starts with: ``"3.1.0rc1"`` is ``(3, 1, 0)``."""
    import re

    found = re.match(r"\d+(?:\.\d+)*", text)
    return tuple(int(part) for part in found.group().split(".")) if found else (1 << 31,)


class Binder(ABC):
    """One kind of app object that can be bound to a test's connection."""

    kind: ClassVar[str]
    """What it binds, as error messages list it: ``"a sessionmaker"``."""
    requires: ClassVar[tuple[Requirement, ...]] = ()
    """The framework releases it needs, checked before it binds anything."""

    @abstractmethod
    def accepts(self, target: Any) -> bool:
        """Whether ``target`` is an object of this binder's kind."""

    def check(self, path: str, target: Any) -> None:
        """Raise :class:`ConfigurationError` if ``target``, accepted, cannot be bound."""
        return

    def is_async(self, target: Any) -> bool | None:
        """Whether ``target`` serves async tests (True), sync ones (False) or both (None)."""
        return False

    def engines(self, target: Any) -> list[Engine]:
        """The app's engines ``target`` connects through as it is configured right now
        (none while it is bound to a test)."""
        return []

    def bound_now(self, target: Any) -> bool:
        """Whether ``target`` is bound to a test's connection at this moment."""
        return False

    @abstractmethod
    def bind(self, target: Any, handle: Handle) -> Iterator[None]:
        """A generator (made a context manager by :func:`bound`): bind ``target`` to
        ``handle``'s connection, yield, and put back what it changed."""

    async def close_async(self, target: Any) -> None:
        """In an async test, before the binding is undone: close what ``target`` opened."""
        return


@dataclass(frozen=True)
class AppObject:
    """An app object to bind to each test, and its binder."""

    path: str
    """How messages name it: its import path, or what bound it at run time."""
    target: Any
    binder: Binder

    def serves(self, is_async: bool) -> bool:
        """Whether it is bound in async tests (``is_async``) or sync ones."""
        wanted = self.binder.is_async(self.target)
        return wanted is None or wanted == is_async

    def engines(self) -> list[Engine]:
        return self.binder.engines(self.target)

    def bound_now(self) -> bool:
        return self.binder.bound_now(self.target)


def classify(
    path: str,
    target: Any,
    binders: Sequence[Binder],
    *,
    subject: str | None = None,
    met: set[Requirement] | None = None,
) -> AppObject:
    """``target`` with the first of ``binders`` that accepts it, or one paragraph naming
    it (``subject``, by default its line of ``alchemy_app_sessions``) and the kinds
    accepted. The binder's framework releases are checked, except those in ``met``
    (checked already: looking a release up reads the installed distributions), which
    gets those found recent enough."""
    for binder in binders:
        if binder.accepts(target):
            for requirement in binder.requires:
                if met is None or requirement not in met:
                    requirement.check(path)
                    if met is not None:
                        met.add(requirement)
            binder.check(path, target)
            return AppObject(path, target, binder)
    kinds = [binder.kind for binder in binders]
    listed = ", ".join(kinds[:-1]) + f" or {kinds[-1]}" if len(kinds) > 1 else kinds[0]
    subject = subject or f"alchemy_app_sessions = {path!r} is"
    raise ConfigurationError(
        message(
            f"{subject} {_described(target)}, which pytest-alchemy cannot bind to a test's "
            f"connection. It binds {listed}. Name the object your app makes its sessions or "
            "connections from, for example myapp.db:SessionLocal."
        )
    )


def _described(target: Any) -> str:
    kind = type(target)
    if isinstance(target, type):
        return f"the class {target.__module__}.{target.__qualname__}"
    return f"a {kind.__module__}.{kind.__qualname__}"


@contextmanager
def bound(objects: Sequence[AppObject], handle: Handle) -> Iterator[None]:
    """Bind those of ``objects`` that serve ``handle``'s kind of test to its connection
    for the block; each is put back, in reverse order, also when the block (or binding
    a later one) fails."""
    with ExitStack() as stack:
        for item in objects:
            if item.serves(handle.is_async):
                stack.enter_context(contextmanager(item.binder.bind)(item.target, handle))
        yield


async def close_async(objects: Sequence[AppObject]) -> None:
    """Close what the async-serving ``objects`` opened during an async test."""
    for item in objects:
        if item.serves(True):
            await item.binder.close_async(item.target)


def saved_attributes(target: Any, names: Sequence[str]) -> Callable[[], None]:
    """Remember ``names`` of ``target`` (set on the object itself, or not); return what
    puts them back exactly: values set again, attributes the object did not have
    removed."""
    saved = {name: vars(target).get(name, _MISSING) for name in names}

    def restore() -> None:
        for name, value in saved.items():
            if value is _MISSING:
                if name in vars(target):
                    delattr(target, name)
            else:
                setattr(target, name, value)

    return restore


_MISSING = object()


class Bindings:
    """What one test bound while it ran (``alchemy_bind``, ``alchemy_override``): each
    put back at the test's end, in reverse order, before its isolation ends."""

    def __init__(
        self, handle: Handle, binders: Sequence[Binder], met: set[Requirement] | None = None
    ) -> None:
        self.handle = handle
        self._binders = binders
        self._met = met
        self._stack = ExitStack()
        self.objects: list[AppObject] = []

    def bind(self, target: Any, *, fixture: str, twin: str) -> Any:
        """Bind ``target`` for the rest of the test and return it; ``fixture`` is how errors
        name the call, ``twin`` the fixture for the other kind of test."""
        item = classify(
            repr(target), target, self._binders, subject=f"{fixture}() was given", met=self._met
        )
        if not item.serves(self.handle.is_async):
            kinds = ("async", "sync") if self.handle.is_async else ("sync", "async")
            raise ConfigurationError(
                message(
                    f"{fixture}() was given {_described(target)}, which serves {kinds[1]} "
                    f"code, in {'an' if kinds[0] == 'async' else 'a'} {kinds[0]} test. Bind it "
                    f"with {twin} in {'an' if kinds[1] == 'async' else 'a'} {kinds[1]} test."
                )
            )
        self._stack.enter_context(contextmanager(item.binder.bind)(target, self.handle))
        self.objects.append(item)
        return target

    def __enter__(self) -> Bindings:
        return self

    def __exit__(self, *_: object) -> None:
        self._stack.close()
