"""The HTTP client. The app, its database and each test's isolation come from pytest-alchemy."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient


@pytest.fixture
def client(alchemy_flask_app: Flask) -> FlaskClient:
    return alchemy_flask_app.test_client()
