"""The fixtures that bind the application to the test: the Flask app of
``alchemy_flask_app``, and ``alchemy_bind`` / ``alchemy_override`` for objects the app
makes at run time (their async twins are in ``aio.fixtures``, built by the same
``binder_of`` / ``overrider_of``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import pytest

from .errors import ConfigurationError, message
from .fixtures import SyncTest, plugin_state, settings_of
from .reporting import reported

T = TypeVar("T")

if TYPE_CHECKING:
    from .binding import Bindings
    from .runtime import Run


@pytest.fixture(scope="session")
def alchemy_flask_app(request: pytest.FixtureRequest, _alchemy_run: Run) -> Iterator[Any]:
    """The Flask app of ``alchemy_flask_app = myapp:create_app`` (a factory is called with
    its engines made on the test database, so ``db.create_all()`` at creation finds the
    schema there). In every test that uses it, its Flask-SQLAlchemy engines and
    ``db.session`` are on the test's connection, inside an application context. Override
    it to return an app of your own (pointed at the test database by ``alchemy_env``)."""
    from .binding import BINDERS, classify
    from .binding.flask import extension_of, load_app
    from .urls import sync_url

    path = _alchemy_run.settings.flask_app
    with reported():
        if path is None:
            raise ConfigurationError(
                message(
                    "the alchemy_flask_app fixture needs alchemy_flask_app = "
                    "myapp:create_app (your Flask app or its factory) in the ini file, or "
                    "override the fixture in conftest.py to return your app."
                )
            )
        url = sync_url(_alchemy_run.info.url)
        assert url is not None
        from .engines import pools_emptied

        # What the factory connected for (create_all, Flask-Migrate's upgrade) is closed.
        with plugin_state(request.config).blocker.unblock(), pools_emptied():
            app = load_app(path, url)
        origin = f"alchemy_flask_app = {path!r}"
        extension_of(origin, app)
        bound = classify(path, app, BINDERS, subject=f"{origin} gave")
    objects = _alchemy_run.app_objects
    objects.append(bound)
    try:
        yield app
    finally:
        if bound in objects:
            objects.remove(bound)
        for engine in bound.engines():
            engine.dispose()


def binder_of(bindings: Bindings | None, fixture: str, twin: str) -> Callable[[T], T]:
    """What ``alchemy_bind`` (``fixture``; its twin for the other kind of test: ``twin``)
    hands out: binds an object for the rest of the test and returns it."""
    assert bindings is not None

    def bind(target: T) -> T:
        __tracebackhide__ = True
        with reported():
            bound: T = bindings.bind(target, fixture=fixture, twin=twin)
        return bound

    return bind


class Override(Protocol):
    """``alchemy_override(app, get_db)``, or with ``shared=True`` to give every request
    the test's own session (left out: ``alchemy_override_sessions`` decides)."""

    def __call__(self, app: Any, dependency: Any, *, shared: bool | None = None) -> None: ...


def overrider_of(bindings: Bindings | None, fixture: str, twin: str, *, shared: bool) -> Override:
    """What ``alchemy_override`` (``fixture``, ``twin``) hands out: overrides an app's
    dependency with the test's sessions for the rest of the test; ``shared`` is what
    ``alchemy_override_sessions`` says when the call does not."""
    assert bindings is not None
    default = shared

    def override(app: Any, dependency: Any, *, shared: bool | None = None) -> None:
        __tracebackhide__ = True
        from .binding.fastapi import override as checked

        with reported():
            target = checked(
                app,
                dependency,
                subject=f"{fixture}(app, dependency)",
                shared=default if shared is None else shared,
            )
            bindings.bind(target, fixture=fixture, twin=twin)

    return override


@pytest.fixture
def alchemy_bind(_alchemy_sync_test: SyncTest) -> Callable[[T], T]:
    """``alchemy_bind(obj)`` binds an app object made at run time (a sessionmaker or engine
    kept on ``app.state`` by a lifespan handler, say) to the test's connection for the rest
    of the test, as ``alchemy_app_sessions`` binds listed ones; returns ``obj``."""
    return binder_of(_alchemy_sync_test.bindings, "alchemy_bind", "alchemy_async_bind")


@pytest.fixture
def alchemy_override(request: pytest.FixtureRequest, _alchemy_sync_test: SyncTest) -> Override:
    """``alchemy_override(app, get_db)``: for the rest of the test, the FastAPI app's
    dependency ``get_db`` yields sessions on the test's connection (requests made through
    ``TestClient`` take part in the test's transaction); put back after the test.
    ``shared=True``: every request gets the test's own ``alchemy_session``."""
    bindings = _alchemy_sync_test.bindings
    shared = settings_of(request).shares_sessions
    return overrider_of(bindings, "alchemy_override", "alchemy_async_override", shared=shared)
