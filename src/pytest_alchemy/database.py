"""The test database of a run: reap, reuse or build, and at the end drop or keep.

Order of work at the first database fixture:

1. Reap: databases recorded by runs that are dead (killed, crashed) and that
   were meant to be dropped are dropped now. Kept and reused ones never are.
2. Refuse: a test database held by a run that is still alive is never taken
   over; the error names that run.
3. Reuse (``reuse_db``) only when the stored fingerprint equals the current
   one and the previous run finished; otherwise say why and rebuild.
4. Build: copy the template of the current fingerprint when the server keeps
   one (see :mod:`pytest_alchemy.templates`), or create the database, record it
   (owner, state ``building``), run the init SQL and build the schema. An error
   or Ctrl-C while building drops the half-built database again.
5. Seed: the app's seeding (``alchemy_seed``, the ``pytest_alchemy_seed`` hook)
   runs on the new database and is committed, unless it is part of the template.

The fingerprint is the schema source's (DDL or hook fingerprint, init SQL) plus
the server's major version, the plugin's version and, when seeding is part of
the template, the seeding code's source.

At the end the database is dropped, unless ``keep_db`` or ``reuse_db`` keep it
(``drop_db`` wins over both). Every create and drop passes the guard.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import URL, Connection

from . import __version__
from .engines import pools_emptied
from .errors import RunConflictError, SchemaError, message
from .provision import (
    KIND_KEPT,
    KIND_REUSE,
    KIND_RUN,
    KIND_TEMPLATE,
    STATE_BUILDING,
    STATE_CLEAN,
    STATE_IN_USE,
    Provisioner,
    Record,
)
from .provision.connector import Connector
from .runs import HEARTBEAT_EVERY, RunIdentity
from .schema import SchemaSource, run_init_sql
from .schema import _digest as digest
from .seeding import Seeder
from .templates import Templates


@dataclass(frozen=True)
class Lifecycle:
    """What happens to the test database between runs."""

    reuse: bool = False
    create: bool = False
    keep: bool = False
    drop: bool = False

    @property
    def kind(self) -> str:
        if self.drop:
            return KIND_RUN
        if self.reuse:
            return KIND_REUSE
        if self.keep:
            return KIND_KEPT
        return KIND_RUN


@dataclass
class DatabaseInfo:
    """The test database of this run, as the ``alchemy_database`` fixture hands it out."""

    url: URL
    """URL of the test database, with the configured driver."""
    name: str
    backend: str
    server_version: str = ""
    created: bool = False
    reused: bool = False
    reason: str = ""
    """Why it was built or reused, in a few words."""
    fingerprint: str | None = None
    schema: str = ""
    build_seconds: float = 0.0
    reaped: list[str] = field(default_factory=list)
    template: str | None = None
    """The template database (or file) this database was copied from, if any."""
    cloned: bool = False
    """Copied from a template built by an earlier run (no schema built this run)."""
    seeded: list[str] = field(default_factory=list)
    """The seeding that ran on this database this run."""

    template_note: str = ""
    """How the schema came to be when the database was made this run, in a few words:
    copied from which template, or built (and why, and whether it was kept)."""

    @property
    def status(self) -> str:
        return "reused" if self.reused else "built"


def major(version: str) -> str:
    """The major version in a server's version string: ``15`` of ``15.4 (Debian ...)``."""
    words = version.split()
    return words[0].split(".", 1)[0] if words else "?"


def reap_dead(provisioner: Provisioner) -> list[str]:
    """Drop the databases on ``provisioner``'s server that dead runs meant to drop.

    Kept (``keep_db``) and reusable (``reuse_db``) databases are never reaped,
    nor those of runs that are still alive; templates only when a run died
    while building them.
    """
    reaped = []
    for name, record in provisioner.records().items():
        half_built_template = record.kind == KIND_TEMPLATE and record.state == STATE_BUILDING
        if (record.kind != KIND_RUN and not half_built_template) or record.owner is None:
            continue
        if record.owner.is_me() or record.owner.is_alive():
            continue
        provisioner.drop(name)
        reaped.append(name)
    return reaped


class DatabaseManager:
    """Provisions one test database through a backend."""

    def __init__(
        self,
        provisioner: Provisioner,
        name: str,
        *,
        lifecycle: Lifecycle,
        schema: SchemaSource,
        init_sql: Sequence[str] = (),
        run: RunIdentity | None = None,
        seeders: Sequence[Seeder] = (),
        seed_in_template: bool = False,
        template_cache: bool = True,
        template_keep: int = 3,
        no_template: str | None = None,
    ) -> None:
        self.provisioner = provisioner
        self.name = name
        self.lifecycle = lifecycle
        self.schema = schema
        self.init_sql = tuple(init_sql)
        self.seeders = tuple(seeders)
        self.seed_in_template = seed_in_template
        self.template_cache = template_cache
        self.template_keep = template_keep
        self.no_template = no_template
        """Why no template can outlive this run (a throwaway server's data is deleted)."""
        self.inputs: dict[str, str] = {}
        """What the fingerprint is made of (schema, server, plugin, seed)."""
        self.run = run or RunIdentity.current()
        self.info: DatabaseInfo | None = None
        self._owned = False
        self._heartbeat: Heartbeat | None = None

    def beat(self) -> None:
        """Refresh the owner's heartbeat in the database's record."""
        self.run = self.run.beat()
        record = self.provisioner.read_record(self.name)
        if record is not None and record.owner is not None and record.owner == self.run:
            self.provisioner.write_record(self.name, record.with_(owner=self.run))

    @property
    def url(self) -> URL:
        return self.provisioner.test_url(self.name)

    def reap(self) -> list[str]:
        """Drop databases whose runs died before dropping them; return their names."""
        return reap_dead(self.provisioner)

    def setup(self) -> DatabaseInfo:
        started = time.perf_counter()
        provisioner = self.provisioner
        info = DatabaseInfo(url=self.url, name=self.name, backend=provisioner.name)
        info.reaped = self.reap()
        info.schema = self.schema.describe()
        info.server_version = self.provisioner.server_version()
        info.fingerprint = self.fingerprint(info.server_version)
        existing = provisioner.read_record(self.name) if provisioner.exists(self.name) else None
        exists = existing is not None or provisioner.exists(self.name)
        if existing is not None and existing.held_by_live_run():
            assert existing.owner is not None
            raise RunConflictError(
                message(
                    f"the test database {provisioner.describe(self.name)} is in use by another "
                    f"pytest run that is still alive: {existing.owner.describe()}. Wait for it "
                    "to finish, or give this run another database (alchemy_url, or "
                    "alchemy_test_prefix)."
                )
            )
        reuse, reason = self._reusable(exists, existing, info.fingerprint)
        if reuse:
            assert existing is not None
            self.provisioner.write_record(
                self.name, existing.with_(owner=self.run, state=STATE_IN_USE)
            )
            self.provisioner.bound_sessions(self.name)
            info.reused = True
        else:
            if exists:
                self.provisioner.drop(self.name)
            info.template_note = self._provide(info)
            info.created = True
        self._owned = True
        self._heartbeat = Heartbeat(self)
        self._heartbeat.start()
        info.reason = reason
        info.build_seconds = time.perf_counter() - started
        self.info = info
        return info

    def fingerprint(self, server_version: str) -> str | None:
        """The fingerprint of what a build would make; None when it cannot be known."""
        schema = self.schema.fingerprint(self.url, self.init_sql)
        if schema is None:
            self.inputs = {}
            return None
        inputs = {
            "schema": schema,
            "server": f"{self.provisioner.name} {major(server_version)}",
            "plugin": __version__,
        }
        if self.seeders and self.seed_in_template:
            inputs["seed"] = digest(seeder.source for seeder in self.seeders)
        self.inputs = inputs
        return digest(f"{key}={value}" for key, value in sorted(inputs.items()))

    @property
    def seeds_each_run(self) -> bool:
        return bool(self.seeders) and not self.seed_in_template

    def _provide(self, info: DatabaseInfo) -> str:
        """Make the test database with its schema (and seed rows); say how, in a few words."""
        fingerprint = info.fingerprint
        problem = self._template_problem(fingerprint)
        if problem is not None:
            started = time.perf_counter()
            self._build(fingerprint)
            note = f"schema built in {time.perf_counter() - started:.2f} s, no template: {problem}"
        else:
            assert fingerprint is not None
            templates = Templates(self.provisioner, keep=self.template_keep)
            result = templates.provide(
                self.name,
                fingerprint,
                self.inputs,
                build=lambda: self._build(fingerprint),
                record=self._record(STATE_IN_USE, fingerprint),
                rebuild=self.lifecycle.create,
                describe_schema=self.schema.describe(),
            )
            info.template = result.template
            info.cloned = not result.built
            info.reaped += [f"{name} (old template)" for name in result.reaped]
            note = result.note
        if self.seeds_each_run:
            try:
                self._seed(self.name)
            except BaseException:
                self.provisioner.drop(self.name)
                raise
            info.seeded = [seeder.name for seeder in self.seeders]
            note += f", seeded by {' and '.join(info.seeded)}"
        return note

    def _template_problem(self, fingerprint: str | None) -> str | None:
        """Why no template is used this run; None when one is."""
        if not self.template_cache:
            return "the template cache is off (alchemy_template_cache = false)"
        if self.no_template is not None:
            return self.no_template
        if fingerprint is None:
            return (
                "the schema source has no fingerprint (pytest_alchemy_schema_fingerprint "
                "returned None or is not implemented), so the schema is built every run"
            )
        return self.provisioner.template_problem()

    def _record(self, state: str, fingerprint: str | None) -> Record:
        return Record(
            kind=self.lifecycle.kind,
            state=state,
            owner=self.run,
            fingerprint=fingerprint,
            schema=self.schema.name,
        )

    def _reusable(
        self, exists: bool, existing: Record | None, fingerprint: str | None
    ) -> tuple[bool, str]:
        if not exists:
            return False, "new database"
        if existing is None:
            return False, "replaced an existing database not created by pytest-alchemy"
        if not self.lifecycle.reuse:
            return False, "reuse_db is off"
        if self.lifecycle.create:
            return False, "create_db"
        if existing.kind != KIND_REUSE:
            return False, "the previous run did not keep it for reuse"
        if existing.state != STATE_CLEAN:
            return False, "the previous run using it did not finish"
        if fingerprint is None:
            return False, "the schema source has no fingerprint"
        if self.seeds_each_run:
            return False, (
                "alchemy_seed runs every run (set alchemy_seed_in_template = true to keep "
                "its rows with the schema)"
            )
        if existing.fingerprint != fingerprint:
            return False, f"schema changed: fingerprint {existing.fingerprint} -> {fingerprint}"
        return True, f"fingerprint {fingerprint} matches"

    def _build(self, fingerprint: str | None) -> None:
        record = self._record(STATE_BUILDING, None)
        self.provisioner.create(self.name, record)
        try:
            with pools_emptied():
                self._build_into(self.name, fingerprint)
            self.provisioner.write_record(
                self.name, record.with_(state=STATE_IN_USE, fingerprint=fingerprint)
            )
        except BaseException:
            self.provisioner.drop(self.name)
            raise

    def _build_into(self, name: str, fingerprint: str | None) -> None:
        """Init SQL, schema and (when part of it) seeding, on the database ``name``."""
        self.run_on_database(
            lambda connection: self._build_schema(connection, name),
            transactional=self.schema.transactional,
            name=name,
        )
        if self.seeders and self.seed_in_template:
            self._seed(name)

    def _build_schema(self, connection: Connection, name: str) -> None:
        # The init SQL first: CREATE EXTENSION, CREATE SCHEMA, types the tables use.
        run_init_sql(connection, self.init_sql)
        try:
            self.schema.build(connection)
        except SchemaError:
            raise
        except Exception as error:
            raise SchemaError(
                message(
                    f"building the schema of {self.provisioner.describe(name)} with "
                    f"{self.schema.describe()} failed: {type(error).__name__}: {error}"
                )
            ) from error

    def seed_again(self) -> None:
        """Run the app's seeding on the test database again (after it was emptied)."""
        if self.seeders:
            self._seed(self.name)

    def _seed(self, name: str) -> None:
        """Run the app's seeding on the database ``name`` and commit it."""
        for seeder in self.seeders:
            try:
                if seeder.is_async:
                    from .urls import async_url

                    url = async_url(self.provisioner.test_url(name), purpose=seeder.name)
                    seeder.run_async(url, self._engine_options(url))
                else:
                    self.run_on_database(seeder.run, transactional=True, name=name)
            except SchemaError:
                raise
            except Exception as error:
                raise seeder.failed(self.provisioner.describe(name), error) from error

    def _engine_options(self, url: URL) -> dict[str, Any]:
        return self.provisioner.engine_options(url, {})

    def run_on_database(
        self, fn: Callable[[Connection], Any], *, transactional: bool, name: str | None = None
    ) -> Any:
        """Run ``fn`` on a connection to the test database (or the database ``name`` of
        its server), in one transaction if asked."""
        connector = Connector(
            self.provisioner.test_url(name) if name is not None else self.url,
            connect_args=lambda url: dict(
                self.provisioner.engine_options(url, {}).get("connect_args") or {}
            ),
            autocommit=not transactional,
        )

        def wrapped(connection: Connection) -> Any:
            if not transactional:
                return fn(connection)
            with connection.begin():
                return fn(connection)

        try:
            return connector.run(wrapped)
        finally:
            connector.close()

    def teardown(self) -> str:
        """Drop or keep the database; return what was done, in a few words."""
        if not self._owned:
            return "nothing to do"
        self._owned = False
        if self._heartbeat is not None:
            self._heartbeat.stop()
        lifecycle = self.lifecycle
        if lifecycle.drop or not (lifecycle.keep or lifecycle.reuse):
            self.provisioner.drop(self.name)
            return "dropped"
        record = self.provisioner.read_record(self.name) or Record(
            kind=lifecycle.kind, state=STATE_CLEAN, owner=None
        )
        self.provisioner.write_record(
            self.name,
            record.with_(
                kind=lifecycle.kind,
                state=STATE_CLEAN,
                owner=None,
                fingerprint=self.info.fingerprint if self.info else record.fingerprint,
            ),
        )
        return "kept for reuse" if lifecycle.reuse else "kept"


class Heartbeat:
    """Refreshes the run's heartbeat in its database record while the run lasts.

    A run on another machine cannot be checked by its process id; it counts as
    dead only once its heartbeat is older than ``runs.STALE_AFTER``.
    """

    def __init__(self, manager: DatabaseManager, every: float = HEARTBEAT_EVERY) -> None:
        self.manager = manager
        self.every = every
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="pytest-alchemy-heartbeat", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopped.wait(self.every):
            try:
                self.manager.beat()
            except Exception:  # a missed beat is harmless; the next one retries
                continue

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
