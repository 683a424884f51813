"""The binders pytest-alchemy knows, in the order they are asked."""

from __future__ import annotations

from .advanced_alchemy import AdvancedAlchemyBinder
from .base import Binder
from .factories import FactoryBoyBinder, PolyfactoryBinder
from .fastapi import DependencyOverrideBinder
from .flask import FlaskAppBinder, FlaskSQLAlchemyBinder
from .sqlalchemy import EngineBinder, ScopedSessionBinder, SessionmakerBinder

BINDERS: tuple[Binder, ...] = (
    SessionmakerBinder(),
    ScopedSessionBinder(),
    EngineBinder(),
    DependencyOverrideBinder(),
    FlaskAppBinder(),
    FlaskSQLAlchemyBinder(),
    FactoryBoyBinder(),
    PolyfactoryBinder(),
    AdvancedAlchemyBinder(),
)
"""Each kind of app object pytest-alchemy binds to a test's connection: the first
that accepts an object binds it."""
