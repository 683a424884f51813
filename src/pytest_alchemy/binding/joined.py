"""The test's connection as an app engine's ``connect()`` returns it during a test."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import InvalidRequestError


class JoinedConnection(Connection):
    """What an app engine's ``connect()`` returns during a test: the test's connection.

    The app's transactions on it are savepoints inside the test's transaction
    (begun on first use, like a connection's own autobegin); ``commit()`` releases
    the savepoint, ``rollback()`` and ``close()`` roll it back, and ``close()``
    leaves the test's connection open. Its ``engine`` is still the app's (sessions
    find their connection by it); everything else is the test's connection.

    It is a :class:`~sqlalchemy.engine.Connection` to everything that asks
    (``isinstance``, ``sqlalchemy.inspect()``, Alembic's ``MigrationContext``, a
    ``Session`` bound to it), without a connection of its own: ``Connection.__init__``
    is not called, and what it does not define itself is the test's connection's.
    """

    def __init__(self, engine: Engine, connection: Connection) -> None:
        self.engine = engine
        self._joined_to = connection
        self._joined_transaction: Any = None
        self._joined_closed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._joined_to, name)

    def __repr__(self) -> str:
        return f"<JoinedConnection of {self._joined_to!r}>"

    def __enter__(self) -> JoinedConnection:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._joined_closed or self._joined_to.closed

    def in_transaction(self) -> bool:
        return self._joined_transaction is not None and self._joined_transaction.is_active

    def get_transaction(self) -> Any:
        return self._joined_transaction if self.in_transaction() else None

    def begin(self) -> Any:
        if self.in_transaction():
            raise InvalidRequestError(
                "This connection has already initialized a SQLAlchemy Transaction() object "
                "via begin() or autobegin; can't call begin() here unless rollback() or "
                "commit() is called first."
            )
        self._joined_transaction = self._joined_to.begin_nested()
        return self._joined_transaction

    def _joined_begin(self) -> None:
        if not self.in_transaction():
            self.begin()

    def begin_nested(self) -> Any:
        self._joined_begin()
        return self._joined_to.begin_nested()

    def commit(self) -> None:
        if self.in_transaction():
            self._joined_transaction.commit()
        self._joined_transaction = None

    def rollback(self) -> None:
        if self.in_transaction():
            self._joined_transaction.rollback()
        self._joined_transaction = None

    def close(self) -> None:
        self.rollback()
        self._joined_closed = True

    def execution_options(self, **options: Any) -> JoinedConnection:
        # A Connection applies them to itself and returns itself: so does this one, or a
        # Session given options would go on with the test's connection, whose
        # transaction it would then commit.
        self._joined_to.execution_options(**options)
        return self

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        self._joined_begin()
        return self._joined_to.execute(*args, **kwargs)

    def exec_driver_sql(self, *args: Any, **kwargs: Any) -> Any:
        self._joined_begin()
        return self._joined_to.exec_driver_sql(*args, **kwargs)

    def scalar(self, *args: Any, **kwargs: Any) -> Any:
        self._joined_begin()
        return self._joined_to.scalar(*args, **kwargs)

    def scalars(self, *args: Any, **kwargs: Any) -> Any:
        self._joined_begin()
        return self._joined_to.scalars(*args, **kwargs)
