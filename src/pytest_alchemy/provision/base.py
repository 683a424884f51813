"""What every backend provisions once per run, and the safety guard no backend can skip.

A :class:`Provisioner` knows one kind of database server: how a test database
is named, created, recorded, found again and dropped, and how a connection is
set up (lock timeouts). What is checked on a connection around each test is a
backend's other half, its :class:`~pytest_alchemy.checks.SessionChecks`, which
:meth:`Provisioner.checks` makes for one test database.

The public ``create``/``drop`` methods are template methods: each first asks
the :class:`Guard`, then calls the backend's private implementation, and so do
the checks' methods that empty or drop tables. So a backend added later cannot
forget the guard.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy.engine import URL, Engine

from ..errors import ProvisionError, SafetyError, message
from ..runs import RunIdentity
from ..urls import DerivedName, derive_name, render_url

if TYPE_CHECKING:
    from ..checks import SessionChecks

TOOL = "pytest-alchemy"

KIND_RUN = "run"
"""A database for one run: dropped at its end, reaped when the run died."""
KIND_KEPT = "kept"
"""Kept at the end for inspection (keep_db); never reaped, recreated next run."""
KIND_REUSE = "reuse"
"""Kept for the next run (reuse_db); never reaped, reused when its fingerprint matches."""
KIND_TEMPLATE = "template"
"""A built schema kept for later runs to copy, named by its fingerprint. Trusted only
in state ``clean``; one left ``building`` by a run that died is dropped. The newest
few are kept (``template_keep``)."""

STATE_BUILDING = "building"
STATE_IN_USE = "in_use"
STATE_CLEAN = "clean"


@dataclass(frozen=True)
class Record:
    """What pytest-alchemy writes next to each database it creates."""

    kind: str
    state: str
    owner: RunIdentity | None
    fingerprint: str | None = None
    schema: str | None = None
    created: float = field(default_factory=time.time)
    uses: int = 0
    """Templates: how many runs copied it so far."""
    used: float = 0.0
    """Templates: when a run last copied it (0: never)."""
    inputs: Mapping[str, str] = field(default_factory=dict)
    """Templates: what the fingerprint was made of, to say what changed."""
    seconds: float = 0.0
    """Templates: how long building it took."""

    def to_json(self) -> str:
        return json.dumps(
            {
                "tool": TOOL,
                "kind": self.kind,
                "state": self.state,
                "owner": self.owner.to_dict() if self.owner else None,
                "fingerprint": self.fingerprint,
                "schema": self.schema,
                "created": self.created,
                "uses": self.uses,
                "used": self.used,
                "inputs": dict(self.inputs),
                "seconds": self.seconds,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | None) -> Record | None:
        """The record in ``text``; None when it is not one of ours."""
        if not text:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("tool") != TOOL:
            return None
        return cls(
            kind=str(data.get("kind", KIND_RUN)),
            state=str(data.get("state", STATE_BUILDING)),
            owner=RunIdentity.from_dict(data.get("owner")),
            fingerprint=data.get("fingerprint"),
            schema=data.get("schema"),
            created=float(data.get("created") or 0.0),
            uses=int(data.get("uses") or 0),
            used=float(data.get("used") or 0.0),
            inputs={str(k): str(v) for k, v in dict(data.get("inputs") or {}).items()},
            seconds=float(data.get("seconds") or 0.0),
        )

    def with_(self, **changes: Any) -> Record:
        return replace(self, **changes)

    def held_by_live_run(self) -> bool:
        return self.owner is not None and not self.owner.is_me() and self.owner.is_alive()


@dataclass(frozen=True)
class Guard:
    """Never create, empty or drop a database that is not a test database.

    ``prefix`` is the test prefix (``test_``); ``protected`` is the database
    named in the user's URL, which is never touched unless its own name already
    starts with ``test``.
    """

    prefix: str
    protected: str | None

    def check(self, action: str, name: str, shown: str | Callable[[], str] | None = None) -> None:
        """Raise :class:`SafetyError` unless ``name`` may be changed; ``shown``: how to
        name it in the error (or what tells it, asked only then)."""
        if (
            self.prefix
            and name.startswith(self.prefix)
            and (name != self.protected or name.startswith("test"))
        ):
            return
        shown = (shown() if callable(shown) else shown) or name
        if not self.prefix:
            raise SafetyError(message(f"refusing to {action} {shown!r}: the test prefix is empty."))
        if not name.startswith(self.prefix):
            raise SafetyError(
                message(
                    f"refusing to {action} the database {shown!r}: its name does not start "
                    f"with the test prefix {self.prefix!r}, so it may hold real data. "
                    "pytest-alchemy only ever creates, empties or drops test databases. "
                    "Point alchemy_url at the server and app database name (the plugin "
                    f"then uses {self.prefix}<name>), or change alchemy_test_prefix."
                )
            )
        if name == self.protected and not name.startswith("test"):
            raise SafetyError(
                message(
                    f"refusing to {action} the database {shown!r}: it is the database named "
                    "in your URL, and its name does not start with 'test'. pytest-alchemy "
                    "never touches the database your URL names unless that name says it is "
                    "a test database."
                )
            )


class Provisioner(ABC):
    """One kind of database server. Subclasses are named in the backend registry."""

    name: ClassVar[str]
    name_limit: ClassVar[int] = 63
    capabilities: ClassVar[frozenset[str]] = frozenset()
    """What this backend can do beyond the basics, for strategies that require it."""
    lifo_pools: ClassVar[bool] = False
    """Whether the plugin's pooled engines hand out the connection returned last first
    (unless the project's engine options say otherwise)."""

    def __init__(
        self, url: URL, prefix: str, *, lock_timeout: float, connect_timeout: float = 10.0
    ) -> None:
        self.url = url
        self.guard = Guard(prefix, self.configured_database())
        """Guards what the run may create, empty or drop: names with ``prefix``, and
        never the database the URL itself names."""
        self.lock_timeout = lock_timeout
        self.connect_timeout = connect_timeout
        """Seconds a connection may take to be established (``alchemy_connect_timeout``)."""
        self.persistent = False
        """Whether admin work reuses one connection (see :meth:`fork`)."""

    def fork(self, *, persistent: bool = False) -> Provisioner:
        """A provisioner of the same server and rules with connections of its own, for
        work done in a thread of its own while the run uses this one. ``persistent``:
        its admin work reuses one connection until :meth:`close` (for many databases
        made and dropped in a row), instead of connecting for each step."""
        forked = type(self)(
            self.url,
            self.guard.prefix,
            lock_timeout=self.lock_timeout,
            connect_timeout=self.connect_timeout,
        )
        forked.persistent = persistent
        return forked

    # -- naming -------------------------------------------------------------

    @abstractmethod
    def configured_database(self) -> str | None:
        """The database name the configured URL names (None: none named)."""

    def derive(self, prefix: str, worker: str | None) -> DerivedName:
        return derive_name(self.configured_database(), prefix, worker=worker, limit=self.name_limit)

    @abstractmethod
    def test_url(self, name: str) -> URL:
        """The URL of the test database ``name`` on this server."""

    def guarded_name(self, name: str) -> str:
        """The part of ``name`` the guard checks (a file's base name for SQLite)."""
        return name

    def describe(self, name: str) -> str:
        return name

    # -- provisioning, behind the guard ---------------------------------------

    def create(self, name: str, record: Record) -> None:
        self.guard.check("create", self.guarded_name(name), self.describe(name))
        self._create(name, record)
        self._bound_new(name)

    def drop(self, name: str) -> None:
        self.guard.check("drop", self.guarded_name(name), self.describe(name))
        self._drop(name)

    def clone(self, template: str, name: str, record: Record, *, small: bool = False) -> None:
        """Create the test database ``name`` as a copy of the test database ``template``.

        Both names pass the guard: only a test database is ever copied, and only
        into a new test database. ``small``: a copy of a database holding little data,
        for one test; the backend may copy it the way that is fastest for that.
        """
        self.guard.check("clone", self.guarded_name(template), self.describe(template))
        self.guard.check("create", self.guarded_name(name), self.describe(name))
        self._clone(template, name, record, small=small)
        self._bound_new(name)

    def template_problem(self) -> str | None:
        """Why this server cannot keep built schemas as templates; None when it can."""
        return None

    def _bound_new(self, name: str) -> None:
        """:meth:`bound_sessions` on a database just made; if that fails, it goes again."""
        try:
            self.bound_sessions(name)
        except BaseException:
            self.drop(name)
            raise

    def bound_sessions(self, name: str) -> None:
        """Make every session on the test database ``name`` inherit the lock bound.

        Not only the plugin's connections wait for locks: the app's own engines,
        threads and subprocesses do too, and one waiting for a lock the test's own
        transaction holds would wait forever. Called when the database is created,
        cloned or reused (the bound may have changed since). Backends whose bound can
        only live in each connection do nothing here.
        """
        self.guard.check("configure", self.guarded_name(name), self.describe(name))
        self._bound_sessions(name)

    def _bound_sessions(self, name: str) -> None:  # noqa: B027 - optional hook
        """The backend's part of :meth:`bound_sessions`."""

    @contextmanager
    def exclusive(self, key: str, *, timeout: float | None = None) -> Iterator[None]:
        """Hold the lock ``key`` on this server for the block, against every process.

        For work only one run may do at a time, such as building a template that
        later runs copy. A run that dies releases it. Waits as long as the lock is
        held, or at most ``timeout`` seconds, then fails naming the key.
        """
        with self._exclusive(key, timeout):
            yield

    def _locked_out(self, key: str, timeout: float) -> ProvisionError:
        return ProvisionError(
            message(
                f"another pytest run has held the lock {key!r} on {render_url(self.url)} for "
                f"more than {timeout:g} s; it is building what this run needs. Wait for it "
                "to finish, or stop it."
            )
        )

    @abstractmethod
    def _clone(self, template: str, name: str, record: Record, *, small: bool = False) -> None: ...

    @abstractmethod
    def _exclusive(self, key: str, timeout: float | None) -> AbstractContextManager[None]: ...

    @abstractmethod
    def _create(self, name: str, record: Record) -> None: ...

    @abstractmethod
    def _drop(self, name: str) -> None: ...

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def read_record(self, name: str) -> Record | None: ...

    @abstractmethod
    def write_record(self, name: str, record: Record) -> None: ...

    @abstractmethod
    def records(self) -> Mapping[str, Record]:
        """Every database on this server that carries one of our records."""

    @abstractmethod
    def server_version(self) -> str: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release admin connections and anything else held for provisioning."""

    def checks(self, database: str) -> SessionChecks:
        """The per-test checks of the test database ``database`` on this server."""
        from .registry import BACKENDS

        return BACKENDS.checks_class(self.name)(self, database)

    # -- connections ---------------------------------------------------------

    def engine_options(self, url: URL, options: Mapping[str, Any]) -> dict[str, Any]:
        """Engine keyword arguments this backend needs on top of the user's."""
        return dict(options)

    @abstractmethod
    def install_connect_events(self, engine: Engine, options: Mapping[str, Any]) -> None:
        """Set up every new DBAPI connection: lock timeout, transaction control."""
