"""The HTTP client. The database fixtures all come from pytest-alchemy."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Connection
from todo_app.main import app


@pytest.fixture
def client(alchemy_connection: Connection) -> TestClient:
    """A client for the app, inside the test's transaction.

    Asking for ``alchemy_connection`` is what binds the app's ``SessionLocal`` to
    the test's connection, so even a test that only makes requests writes
    nothing that outlives it.
    """
    return TestClient(app)
