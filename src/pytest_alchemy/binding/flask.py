"""Flask-SQLAlchemy 3: the extension's engines (binds included) and ``db.session`` on the
test's connection.

A Flask app (or the ``SQLAlchemy`` extension object itself) bound to a test hands out
the test's connection from every engine the extension made for it, as the
``Engine`` binder does, so that ``db.session``, ``Model.query``, ``db.engine`` and
the views' ``db.session.commit()`` all stay inside the test's transaction (a commit
is a savepoint's). ``db.session`` is removed before and after the test, so no session
crosses tests. A bound app also has an application context pushed for the test when
none is active, so tests can use ``db.session`` without one of their own; requests
through ``app.test_client()`` share it.

:func:`repointed` makes the app factory build its engines on the test database, so
that ``db.create_all()`` or Flask-Migrate's ``upgrade()`` run at app creation find the
schema already there.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, ClassVar

from sqlalchemy.engine import URL, Engine

from ..errors import ConfigurationError, message
from .base import Binder, Handle, Requirement
from .sqlalchemy import EngineBinder

ENGINE = EngineBinder()
"""Binds each app's one engine during a test."""
FLASK_APP_WANTED = "your Flask app or its factory, for example {module}:create_app"


def _extension_class() -> Any:
    module = sys.modules.get("flask_sqlalchemy")
    return getattr(module, "SQLAlchemy", None)


def extension_of(path: str, app: Any) -> Any:
    """The Flask-SQLAlchemy 3 extension of ``app``, or one paragraph saying what is wrong."""
    db = getattr(app, "extensions", {}).get("sqlalchemy")
    if db is None:
        raise ConfigurationError(
            message(
                f"{path}: the Flask app {getattr(app, 'name', app)!r} has no Flask-SQLAlchemy "
                "extension. Call db.init_app(app) (or SQLAlchemy(app)) in the app factory."
            )
        )
    _check_version(path, db)
    return db


def _check_version(path: str, db: Any) -> None:
    if not hasattr(db, "_app_engines"):
        raise ConfigurationError(
            message(
                f"{path}: this is Flask-SQLAlchemy 2.x, which pytest-alchemy does not support "
                "(its engines and sessions work differently). Upgrade to Flask-SQLAlchemy 3 "
                "(pip install 'flask-sqlalchemy>=3')."
            )
        )


def _engines(db: Any, app: Any = None) -> list[Engine]:
    apps = [app] if app is not None else list(db._app_engines)
    return [engine for each in apps for engine in db._app_engines.get(each, {}).values()]


@contextmanager
def _joined(db: Any, apps: list[Any], handle: Handle) -> Iterator[None]:
    """Every bind of ``apps`` served by one engine on the test's connection for the block,
    ``db.session`` forgotten before and after.

    A session that used one engine per bind would hold one savepoint per bind on the same
    connection, nested, and ending the outer one ends the inner: so every bind key leads
    to the default engine (all of them are the test database in a test), bound as the
    ``Engine`` binder binds one.
    """
    _remove_session(db)
    try:
        with ExitStack() as stack:
            for app in apps:
                engines: dict[Any, Engine] = db._app_engines.get(app, {})
                if not engines:
                    continue
                stack.callback(_put, engines, dict(engines))
                engine = engines.get(None) or next(iter(engines.values()))
                engines.update(dict.fromkeys(engines, engine))
                stack.enter_context(contextmanager(ENGINE.bind)(engine, handle))
            yield
    finally:
        _remove_session(db)


def _put(engines: dict[Any, Engine], saved: dict[Any, Engine]) -> None:
    engines.clear()
    engines.update(saved)


class FlaskSQLAlchemyBinder(Binder):
    kind: ClassVar[str] = "a Flask-SQLAlchemy 3 SQLAlchemy() object"
    requires = (Requirement("flask-sqlalchemy", "3.0"),)

    def accepts(self, target: Any) -> bool:
        extension = _extension_class()
        return extension is not None and isinstance(target, extension)

    def check(self, path: str, target: Any) -> None:
        _check_version(path, target)

    def engines(self, target: Any) -> list[Engine]:
        return _engines(target)

    def bind(self, target: Any, handle: Handle) -> Iterator[None]:
        with _joined(target, list(target._app_engines), handle):
            yield


class FlaskAppBinder(Binder):
    kind: ClassVar[str] = "a Flask app using Flask-SQLAlchemy 3"
    requires = (Requirement("flask-sqlalchemy", "3.0"),)

    def accepts(self, target: Any) -> bool:
        flask = sys.modules.get("flask")
        return flask is not None and isinstance(target, flask.Flask)

    def check(self, path: str, target: Any) -> None:
        extension_of(path, target)

    def engines(self, target: Any) -> list[Engine]:
        return _engines(target.extensions["sqlalchemy"], target)

    def bind(self, target: Any, handle: Handle) -> Iterator[None]:
        import flask

        db = target.extensions["sqlalchemy"]
        with ExitStack() as stack:
            if not flask.has_app_context():
                stack.enter_context(target.app_context())
            stack.enter_context(_joined(db, [target], handle))
            yield


def _remove_session(db: Any) -> None:
    """Forget ``db.session``'s current session; it is per application context, so only
    where one is active (the others' go when their context ends)."""
    import flask

    if flask.has_app_context():
        db.session.remove()


@contextmanager
def repointed(url: URL) -> Iterator[None]:
    """While the block runs, every app Flask-SQLAlchemy is initialised for gets its
    database URI and binds set to ``url`` first: the engines it makes lead to the test
    database (their other options are kept)."""
    extension = _extension_class()
    if extension is None:
        yield
        return
    original = extension.init_app
    rendered = _unescaped_slashes(url)

    def init_app(self: Any, app: Any) -> None:
        config = app.config
        config["SQLALCHEMY_DATABASE_URI"] = rendered
        binds = dict(config.get("SQLALCHEMY_BINDS") or {})
        for key, value in binds.items():
            binds[key] = {**value, "url": rendered} if isinstance(value, dict) else rendered
        config["SQLALCHEMY_BINDS"] = binds
        original(self, app)

    extension.init_app = init_app
    try:
        yield
    finally:
        extension.init_app = original


def _unescaped_slashes(url: URL) -> str:
    """``url`` as a string, with the slashes of a socket directory (``?host=/tmp/...``)
    written as slashes where that reads back as the same URL: Flask-Migrate's older
    ``env.py`` hands ``SQLALCHEMY_DATABASE_URI`` to Alembic's config, where a ``%`` is
    an interpolation error."""
    from sqlalchemy.engine import make_url

    rendered = url.render_as_string(hide_password=False)
    plain = rendered.replace("%2F", "/")
    return plain if plain != rendered and make_url(plain) == url else rendered


def load_app(path: str, url: URL) -> Any:
    """The Flask app ``path`` names: the app itself, or what its factory returns, called
    with every engine Flask-SQLAlchemy makes on ``url``."""
    from ..schema import import_object

    target = import_object(path, "alchemy_flask_app", FLASK_APP_WANTED)
    if not callable(target) or hasattr(target, "extensions"):
        return target
    with repointed(url):
        try:
            return target()
        except Exception as error:
            raise ConfigurationError(
                message(
                    f"alchemy_flask_app = {path!r}: calling the app factory failed: "
                    f"{type(error).__name__}: {error}. Fix the factory, or point "
                    "alchemy_flask_app at the app itself."
                )
            ) from error


@contextmanager
def app_context(path: str, url: URL) -> Iterator[None]:
    """The application context of the app ``path`` names, its engines on ``url``, for
    Flask-Migrate's env.py to find the extension and its engine through ``current_app``."""
    app = load_app(path, url)
    with app.app_context():
        yield
