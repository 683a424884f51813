"""The HTTP client. The database, its schema and its seed rows all come from pytest-alchemy."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from shop_app.api.deps import get_db
from shop_app.main import app


@pytest.fixture
def client(alchemy_override: Callable[[Any, Any], None]) -> Iterator[TestClient]:
    """A client whose requests run inside the test's transaction.

    ``get_db`` yields the test's sessions (SQLModel's, on the test's connection) for
    the test's duration: what a route commits the test sees, and all of it is rolled
    back when the test ends.
    """
    alchemy_override(app, get_db)
    with TestClient(app) as client:
        yield client
