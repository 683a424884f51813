"""The schema of the test database: where it comes from, and its fingerprint.

* ``create_all``: every table of the application's metadata (one or several
  ``MetaData`` objects, a declarative ``Base``, SQLModel's), built once per
  run. Foreign-key cycles need no ``use_alter`` from the user: SQLAlchemy adds
  the constraints of a cycle after the tables, and the plugin never relies on
  ``drop_all`` (it drops whole databases), which is what fails on cycles.
* ``hook``: the ``pytest_alchemy_create_schema`` hook builds it; an optional
  ``pytest_alchemy_schema_fingerprint`` hook makes ``reuse_db`` possible.
* ``alembic``: ``alembic upgrade head`` (see ``alembic_schema``), the default
  when an Alembic configuration is found.
* ``none``: the database is used as it is.

The fingerprint is a hash of exactly what would be executed: the DDL that
``create_all`` emits for this dialect, the init SQL and the schema source.
The DDL statements are hashed in sorted order: SQLAlchemy emits the
constraints that close a foreign-key cycle in an order that changes from one
interpreter to the next (it follows string hashing), while the schema they
build does not. Init statements keep their order, which matters.
``reuse_db`` reuses a database only when its stored fingerprint equals the
current one, so an edited model or init statement is never served stale.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import MetaData, create_mock_engine
from sqlalchemy.engine import URL, Connection
from sqlalchemy.sql.ddl import ExecutableDDLElement

from .errors import ConfigurationError, SchemaError, message

FINGERPRINT_VERSION = "1"


def as_metadatas(value: Any, origin: str) -> tuple[MetaData, ...]:
    """``value`` as MetaData objects: a MetaData, a class with ``.metadata``, or a list."""
    items: Iterable[Any] = value if isinstance(value, (list, tuple, set)) else (value,)
    found: list[MetaData] = []
    for item in items:
        metadata = item if isinstance(item, MetaData) else getattr(item, "metadata", None)
        if not isinstance(metadata, MetaData):
            raise ConfigurationError(
                message(
                    f"{origin} is {item!r}, which is neither a MetaData nor a declarative Base "
                    "with a .metadata. Point it at your models' Base (myapp.models:Base) or "
                    "their MetaData (myapp.db:metadata)."
                )
            )
        if metadata not in found:
            found.append(metadata)
    if not found:
        raise ConfigurationError(message(f"{origin} is empty: it names no MetaData."))
    return tuple(found)


METADATA_WANTED = "the object that holds your tables, for example {module}:Base"


def import_object(path: str, origin: str, wanted: str = METADATA_WANTED) -> Any:
    """Import ``pkg.module:attr`` (or ``pkg.module.attr``); errors say what to check.

    ``wanted`` says, in the error for a missing attribute, what the path should name
    (``{module}`` is replaced by the module's name).
    """
    module_name, _, attribute = path.partition(":")
    if not attribute:
        module_name, _, attribute = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise ConfigurationError(
            message(
                f"{origin} = {path!r}: importing {module_name!r} failed with "
                f"{type(error).__name__}: {error}. Check the module path, and that the "
                "project is importable from the test run (for example pythonpath = . or "
                "src in the pytest ini section, or pip install -e .)."
            )
        ) from None
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigurationError(
                message(
                    f"{origin} = {path!r}: the module {module_name!r} has no attribute "
                    f"{attribute!r}. Name {wanted.format(module=module_name)}."
                )
            ) from None
    return target


def discover_metadata() -> tuple[MetaData, ...]:
    """MetaData with tables from SQLModel and from declarative Base classes already imported."""
    found: list[MetaData] = []
    sqlmodel = sys.modules.get("sqlmodel")
    if sqlmodel is not None:
        metadata = getattr(getattr(sqlmodel, "SQLModel", None), "metadata", None)
        if isinstance(metadata, MetaData) and metadata.tables:
            found.append(metadata)
    from sqlalchemy.orm import DeclarativeBase, DeclarativeBaseNoMeta

    pending: list[type[Any]] = [DeclarativeBase, DeclarativeBaseNoMeta]
    flask_sqlalchemy = sys.modules.get("flask_sqlalchemy")
    if flask_sqlalchemy is not None:
        # Flask-SQLAlchemy's db.Model (and each bind's): not a DeclarativeBase subclass.
        from flask_sqlalchemy.model import Model

        pending.append(Model)
    while pending:
        cls = pending.pop()
        sub: type[Any]
        for sub in cls.__subclasses__():
            pending.append(sub)
            metadata = sub.__dict__.get("metadata")
            if isinstance(metadata, MetaData) and metadata.tables and metadata not in found:
                found.append(metadata)
    return tuple(found)


NO_METADATA = (
    "no metadata to build the test database's schema from. Tell pytest-alchemy where "
    "your tables are: add alchemy_metadata = myapp.models:Base (your declarative Base "
    "or MetaData) to the [pytest] section of your ini file (or pyproject.toml "
    "[tool.pytest.ini_options]), or override the alchemy_metadata fixture in conftest.py. "
    "Set alchemy_schema = none to use the database as it is."
)


class SchemaSource(ABC):
    """Where the schema comes from."""

    name: str
    transactional: bool = True
    """Whether the build runs in one transaction; False: on an AUTOCOMMIT connection (a
    source whose build opens connections of its own must see what ran before it)."""

    @abstractmethod
    def fingerprint(self, url: URL, init_sql: Sequence[str]) -> str | None:
        """A hash of everything the build executes; None when it cannot be known."""

    @abstractmethod
    def build(self, connection: Connection) -> None: ...

    def describe(self) -> str:
        return self.name


def _digest(parts: Iterable[str]) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode())
        hasher.update(b"\0")
    return hasher.hexdigest()[:16]


def ddl_statements(metadatas: Sequence[MetaData], url: URL) -> list[str]:
    """The DDL ``create_all`` emits for ``url``'s dialect, in order."""
    statements: list[str] = []

    def record(sql: Any, *_: Any, **__: Any) -> None:
        if isinstance(sql, ExecutableDDLElement):
            statements.append(str(sql.compile(dialect=engine.dialect)).strip())

    engine = create_mock_engine(url.set(drivername=url.get_backend_name()), record)
    for metadata in metadatas:
        metadata.create_all(engine, checkfirst=False)
    return statements


@dataclass
class CreateAll(SchemaSource):
    metadatas: tuple[MetaData, ...]
    name: str = "create_all"

    def fingerprint(self, url: URL, init_sql: Sequence[str]) -> str | None:
        return _digest(
            [
                FINGERPRINT_VERSION,
                self.name,
                *sorted(ddl_statements(self.metadatas, url)),
                *init_sql,
            ]
        )

    def build(self, connection: Connection) -> None:
        for metadata in self.metadatas:
            metadata.create_all(connection)

    def describe(self) -> str:
        tables = sum(len(metadata.tables) for metadata in self.metadatas)
        return f"create_all ({tables} tables)"


@dataclass
class HookSchema(SchemaSource):
    builder: Callable[[Connection], None]
    fingerprinter: Callable[[], str | None]
    name: str = "hook"

    def fingerprint(self, url: URL, init_sql: Sequence[str]) -> str | None:
        given = self.fingerprinter()
        if given is None:
            return None
        return _digest([FINGERPRINT_VERSION, self.name, str(given), *init_sql])

    def build(self, connection: Connection) -> None:
        self.builder(connection)


@dataclass
class NoSchema(SchemaSource):
    name: str = "none"

    def fingerprint(self, url: URL, init_sql: Sequence[str]) -> str | None:
        return _digest([FINGERPRINT_VERSION, self.name, *init_sql])

    def build(self, connection: Connection) -> None:
        return None


PREREQUISITE = re.compile(r"^\s*CREATE\s+(EXTENSION|SCHEMA)\b", re.IGNORECASE)


def split_init_sql(statements: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The init SQL in two parts, each in its order: what survives taking the schema to
    its base (``CREATE EXTENSION``, ``CREATE SCHEMA``), and the rest (tables of its own,
    rows), which a migration check on the test database runs again afterwards."""
    before = tuple(each for each in statements if PREREQUISITE.match(each))
    return before, tuple(each for each in statements if not PREREQUISITE.match(each))


def run_init_sql(connection: Connection, statements: Sequence[str]) -> None:
    for statement in statements:
        try:
            connection.exec_driver_sql(statement)
        except Exception as error:
            raise SchemaError(
                message(
                    f"the init SQL statement {statement!r} failed: {error}. Fix or remove it "
                    "in alchemy_init_sql."
                )
            ) from None
