"""Options that would make isolation impossible: refused with the reason, never dropped.

Wherever an option can come from (the URL's query, ``alchemy_engine_options``,
``alchemy_session_options``), the same rules apply: AUTOCOMMIT in any spelling
commits every statement, a driver's own autocommit switch does the same,
READ UNCOMMITTED lets tests see each other's rows, and the options the plugin
owns itself (the session's bind, its join mode, the async engines' pool) are
not the project's to set. Each refusal is one paragraph saying what to remove.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError, message
from .urls import render_url

if TYPE_CHECKING:
    from sqlalchemy.engine import URL


def isolation_level_name(value: object) -> str:
    """An isolation level in SQLAlchemy's spelling, whatever case and separators it came in."""
    words = str(value).replace("_", " ").replace("-", " ").split()
    name = " ".join(words).upper()
    return "AUTOCOMMIT" if name.replace(" ", "") == "AUTOCOMMIT" else name


def check_url_query(url: URL, source: str) -> None:
    """Refuse URL query parameters that would commit every statement or mix tests' data."""
    shown = render_url(url)
    level = isolation_level_name(url.query.get("isolation_level", ""))
    if level in ("AUTOCOMMIT", "READ UNCOMMITTED"):
        effect = (
            "commits every statement, so no test could be rolled back"
            if level == "AUTOCOMMIT"
            else "lets a test read rows other tests have not committed"
        )
        raise ConfigurationError(
            message(
                f"url = {shown!r} (from {source}) sets isolation_level={level}, which {effect}. "
                "Remove it from the URL: pytest-alchemy manages transactions itself."
            )
        )
    if "autocommit" in url.query and url.get_backend_name() != "sqlite":
        raise ConfigurationError(
            message(
                f"url = {shown!r} (from {source}) has an autocommit query parameter, which "
                "reaches the driver and commits every statement, so no test could be rolled "
                "back. Remove it from the URL."
            )
        )


REFUSED_SESSION_OPTIONS = {
    "bind": "every session is bound to the test's connection",
    "binds": "every session is bound to the test's connection",
    "join_transaction_mode": (
        "the plugin joins sessions to the test's transaction with 'create_savepoint'"
    ),
}
REFUSED_ASYNC_ENGINE_OPTIONS = {
    "poolclass": "the plugin picks the pool per event loop",
    "pool": "the plugin picks the pool per event loop",
}


def check_engine_options(
    url: URL, options: Mapping[str, Any], *, origin: str, is_async: bool = False
) -> None:
    """Refuse options that would commit every statement or let tests see each other."""
    if is_async:
        for key, reason in REFUSED_ASYNC_ENGINE_OPTIONS.items():
            if key in options:
                raise ConfigurationError(
                    message(f"{origin} cannot set {key!r}: {reason}. Remove it.")
                )
    execution = options.get("execution_options") or {}
    for where, value in (
        ("isolation_level", options.get("isolation_level")),
        ("execution_options isolation_level", execution.get("isolation_level")),
    ):
        if value is None:
            continue
        level = isolation_level_name(value)
        if level == "AUTOCOMMIT":
            raise ConfigurationError(
                message(
                    f"{origin}: {where} = {value!r} commits every statement, so no test could "
                    "be rolled back. Remove it (pytest-alchemy manages transactions itself; "
                    "use alchemy_isolation = none for tests that must commit for real)."
                )
            )
        if level == "READ UNCOMMITTED":
            raise ConfigurationError(
                message(
                    f"{origin}: {where} = {value!r} lets a test read rows other tests have not "
                    "committed, so tests could see each other. Remove it, or use READ COMMITTED "
                    "or stricter."
                )
            )
    connect_args = options.get("connect_args") or {}
    autocommit = connect_args.get("autocommit")
    is_sqlite = url.get_backend_name() == "sqlite"
    # sqlite3 takes True, False or LEGACY_TRANSACTION_CONTROL (-1, the default);
    # psycopg, pymysql and friends commit on any true value.
    if (autocommit is True) if is_sqlite else bool(autocommit):
        raise ConfigurationError(
            message(
                f"{origin}: connect_args autocommit={autocommit!r} makes the driver commit every "
                "statement, so no test could be rolled back. Remove it or set it to False."
            )
        )


def check_session_options(options: Mapping[str, Any], *, origin: str) -> None:
    for key, reason in REFUSED_SESSION_OPTIONS.items():
        if key in options:
            raise ConfigurationError(message(f"{origin} cannot set {key!r}: {reason}. Remove it."))
