"""A small blog on Flask, Flask-SQLAlchemy 3 and Flask-Migrate.

``create_app()`` reads the database from ``DATABASE_URL`` (default ``blog.db`` in the
instance folder) and brings it up to the newest migration before it returns, as many
deployments do at start-up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from flask_migrate import Migrate, upgrade
from flask_sqlalchemy import SQLAlchemy

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
"""Flask-Migrate's folder (``flask db init`` made it): alembic.ini, env.py, versions/."""

db = SQLAlchemy()
migrate = Migrate()


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The app, its database migrated to the head revision."""
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ.get("DATABASE_URL", "sqlite:///blog.db")
    if config:
        app.config.update(config)

    from . import models  # noqa: F401  (the models join db.metadata)
    from .views import categories, errors, posts, users

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS))
    app.register_blueprint(users)
    app.register_blueprint(posts)
    app.register_blueprint(categories)
    errors(app)

    with app.app_context():
        upgrade()
    return app
