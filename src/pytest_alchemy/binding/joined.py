"""The test's connection as an app engine's ``connect()`` returns it during a test."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import InvalidRequestError


class JoinedConnection:
    """What an app engine's ``connect()`` returns during a test: the test's connection.

    The app's transactions on it are savepoints inside the test's transaction
    (begun on first use, like a connection's own autobegin); ``commit()`` releases
    the savepoint, ``rollback()`` and ``close()`` roll it back, and ``close()``
    leaves the test's connection open. Its ``engine`` is still the app's (sessions
    find their connection by it); everything else is the test's connection.
    """

    def __init__(self, engine: Engine, connection: Connection) -> None:
        self.engine = engine
        self._connection = connection
        self._transaction: Any = None
        self._closed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    def __repr__(self) -> str:
        return f"<JoinedConnection of {self._connection!r}>"

    def __enter__(self) -> JoinedConnection:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed or self._connection.closed

    def in_transaction(self) -> bool:
        return self._transaction is not None and self._transaction.is_active

    def get_transaction(self) -> Any:
        return self._transaction if self.in_transaction() else None

    def begin(self) -> Any:
        if self.in_transaction():
            raise InvalidRequestError(
                "This connection has already initialized a SQLAlchemy Transaction() object "
                "via begin() or autobegin; can't call begin() here unless rollback() or "
                "commit() is called first."
            )
        self._transaction = self._connection.begin_nested()
        return self._transaction

    def _autobegin(self) -> None:
        if not self.in_transaction():
            self.begin()

    def begin_nested(self) -> Any:
        self._autobegin()
        return self._connection.begin_nested()

    def commit(self) -> None:
        if self.in_transaction():
            self._transaction.commit()
        self._transaction = None

    def rollback(self) -> None:
        if self.in_transaction():
            self._transaction.rollback()
        self._transaction = None

    def close(self) -> None:
        self.rollback()
        self._closed = True

    def execution_options(self, **options: Any) -> JoinedConnection:
        # A Connection applies them to itself and returns itself: so does this one, or a
        # Session given options would go on with the test's connection, whose
        # transaction it would then commit.
        self._connection.execution_options(**options)
        return self

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        self._autobegin()
        return self._connection.execute(*args, **kwargs)

    def exec_driver_sql(self, *args: Any, **kwargs: Any) -> Any:
        self._autobegin()
        return self._connection.exec_driver_sql(*args, **kwargs)

    def scalar(self, *args: Any, **kwargs: Any) -> Any:
        self._autobegin()
        return self._connection.scalar(*args, **kwargs)

    def scalars(self, *args: Any, **kwargs: Any) -> Any:
        self._autobegin()
        return self._connection.scalars(*args, **kwargs)
