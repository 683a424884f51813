"""The application's own seeding, run once after the schema is built.

``alchemy_seed = myapp.seed:init_db`` names a callable that writes the rows every
test needs (the superuser tests log in as, lookup tables...). What it is given
depends on its first parameter:

* annotated ``Session`` (or not annotated): a :class:`~sqlalchemy.orm.Session`
  bound to the connection of the seeding transaction;
* annotated ``Connection`` (or named ``connection``/``conn``): that connection;
* an ``async def``: an :class:`~sqlalchemy.ext.asyncio.AsyncSession` (or an
  ``AsyncConnection`` when annotated so), on an async engine of its own.

Everything it writes is committed once it returns, whether it commits or not, and
becomes part of the baseline every test starts from. A ``pytest_alchemy_seed``
hook in a ``conftest.py`` does the same with the connection.

By default seeding runs every run, after the schema is built or copied from its
template, so rows generated anew each run are never served stale. With
``alchemy_seed_in_template = true`` the rows become part of the cached schema
instead, and the source of the seeding code joins the fingerprint.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import URL, Connection

from .errors import ConfigurationError, SchemaError, message
from .schema import import_object

SESSION = "session"
CONNECTION = "connection"
ASYNC_SESSION = "async_session"
ASYNC_CONNECTION = "async_connection"

SEED_WANTED = "your seeding function, for example {module}:init_db"


@dataclass(frozen=True)
class Seeder:
    """One way the app seeds its rows."""

    name: str
    """How messages name it: the import path, or the hook."""
    fn: Callable[..., Any]
    kind: str
    """What ``fn`` is given: :data:`SESSION`, :data:`CONNECTION`, :data:`ASYNC_SESSION`
    or :data:`ASYNC_CONNECTION`."""
    source: str
    """A hash of its source code, for the fingerprint when seeding is part of the template."""

    def run(self, connection: Connection) -> None:
        """Seed through ``connection``, which is inside the transaction that commits it."""
        from sqlalchemy.orm import Session

        if self.kind == CONNECTION:
            self.fn(connection)
            return
        session = self._session_class(Session)(bind=connection)
        try:
            self.fn(session)
            session.flush()
        finally:
            session.close()

    def run_async(self, url: URL, engine_options: dict[str, Any]) -> None:
        """Seed on an async engine of its own on ``url``, in a thread with its own loop
        (the calling thread may be running a loop already)."""
        failure: list[BaseException] = []

        def target() -> None:
            try:
                asyncio.run(self._seed_async(url, engine_options))
            except BaseException as error:
                failure.append(error)

        thread = threading.Thread(target=target, name="pytest-alchemy-seed")
        thread.start()
        thread.join()
        if failure:
            raise failure[0]

    async def _seed_async(self, url: URL, engine_options: dict[str, Any]) -> None:
        from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
        from sqlalchemy.pool import NullPool

        options = dict(engine_options)
        options.setdefault("poolclass", NullPool)
        engine = create_async_engine(url, **options)
        try:
            async with engine.begin() as connection:
                if self.kind == ASYNC_CONNECTION:
                    await self.fn(connection)
                    return
                session = self._session_class(AsyncSession)(bind=connection)
                try:
                    await self.fn(session)
                    await session.flush()
                finally:
                    await session.close()
        finally:
            await engine.dispose()

    def _session_class(self, default: type[Any]) -> type[Any]:
        """The session class the seeding function is given: the one its first parameter
        is annotated with (a subclass of ``default``), else SQLModel's when the app's
        tables are SQLModel's, else ``default``."""
        from .engines import sqlmodel_session_class, sqlmodel_tables

        annotated = _first_annotation(self.fn)
        if isinstance(annotated, type) and issubclass(annotated, default):
            return annotated
        if sqlmodel_tables():
            return sqlmodel_session_class(is_async=self.is_async) or default
        return default

    @property
    def is_async(self) -> bool:
        return self.kind in (ASYNC_SESSION, ASYNC_CONNECTION)

    def failed(self, database: str, error: BaseException) -> SchemaError:
        return SchemaError(
            message(
                f"seeding the test database {database} with {self.name} failed: "
                f"{type(error).__name__}: {error}. Fix the seeding code, or remove "
                "alchemy_seed (or the pytest_alchemy_seed hook)."
            )
        )


def source_hash(*functions: Any) -> str:
    """A hash of the source of ``functions`` (their qualified names when it is unknown)."""
    hasher = hashlib.sha256()
    for function in functions:
        try:
            text = inspect.getsource(function)
        except (OSError, TypeError):
            text = f"{getattr(function, '__module__', '')}.{getattr(function, '__qualname__', '')}"
        hasher.update(text.encode())
        hasher.update(b"\0")
    return hasher.hexdigest()[:16]


def _first_annotation(fn: Callable[..., Any]) -> Any:
    """The annotation of ``fn``'s first parameter, evaluated where it can be."""
    try:
        signature = inspect.signature(fn, eval_str=True)
    except Exception:  # an annotation names what cannot be imported here: left a string
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            return None
    parameters = list(signature.parameters.values())
    return parameters[0].annotation if parameters else None


def argument_kind(fn: Callable[..., Any], origin: str) -> str:
    """What ``fn`` wants to be given, from its first parameter and whether it is async."""
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - a callable object's method
    )
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        # A callable whose signature cannot be read (a builtin, some compiled code):
        # it gets the session.
        return ASYNC_SESSION if is_async else SESSION
    if not parameters:
        raise ConfigurationError(
            message(
                f"{origin} takes no argument; it must take the session (or connection) to "
                "write the seed rows through, for example def init_db(session: Session)."
            )
        )
    first = parameters[0]
    annotation = first.annotation
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    text = str(text).rsplit(".", 1)[-1]
    wants_connection = "Connection" in text or (
        annotation is inspect.Parameter.empty and first.name in ("connection", "conn")
    )
    if is_async:
        return ASYNC_CONNECTION if wants_connection else ASYNC_SESSION
    return CONNECTION if wants_connection else SESSION


def load_seeder(path: str) -> Seeder:
    """The seeder ``alchemy_seed`` names."""
    origin = "alchemy_seed"
    fn = import_object(path, origin, wanted=SEED_WANTED)
    if not callable(fn):
        raise ConfigurationError(
            message(
                f"{origin} = {path!r} names {fn!r}, which is not callable. Name "
                "your seeding function, for example myapp.seed:init_db."
            )
        )
    kind = argument_kind(fn, f"{origin} = {path!r}")
    return Seeder(name=path, fn=fn, kind=kind, source=source_hash(fn))
