"""Built schemas kept as templates, so a run copies its schema instead of building it.

A template is a test database (PostgreSQL) or file (SQLite) named by the
fingerprint of what built it: ``test_app_tpl_<fingerprint>`` beside the test
database ``test_app``, always under the test prefix, within the server's name
length. It carries a record of kind ``template``.

* The next run with the same fingerprint copies it: ``CREATE DATABASE ...
  TEMPLATE`` on PostgreSQL, SQLite's backup API for a file. A changed model,
  init statement, hook fingerprint, server major version or plugin version is
  another fingerprint, so another template: a template is never stale.
* Building, copying and reaping templates of one test database are serialised
  across every run on the server by a lock (an advisory lock on PostgreSQL, a
  file lock for SQLite): of two runs that need the same template at once, one
  builds it and the other waits, then copies it.
* The schema is built into the test database itself (so a schema hook, or an
  ``env.py`` that connects through the app's own settings, builds where the run
  then tests), then copied into the template, which is marked ``clean`` only
  once the copy is complete. One still ``building`` when a run gets the lock
  was left by a run that died: it is dropped and built again. Only ``clean``
  templates are ever copied.
* After each build or copy, the newest ``keep`` templates of the test database
  stay (newest by last use), older ones are dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .errors import PREFIX, ProvisionError
from .provision import KIND_TEMPLATE, STATE_BUILDING, STATE_CLEAN, Provisioner, Record
from .urls import bounded_name

TEMPLATE_MARK = "_tpl_"
SHORT = 8
"""Characters of a fingerprint shown in messages."""

INPUT_NAMES = {
    "schema": "schema changed",
    "server": "server version changed",
    "plugin": "pytest-alchemy version changed",
    "seed": "seeding code changed",
}


@dataclass
class Provided:
    """How the test database got its schema."""

    template: str
    built: bool
    note: str
    reaped: list[str] = field(default_factory=list)


def short(fingerprint: str | None) -> str:
    return (fingerprint or "-")[:SHORT]


class Templates:
    """The templates of one test database on one server."""

    def __init__(self, provisioner: Provisioner, *, keep: int) -> None:
        self.provisioner = provisioner
        self.keep = max(1, keep)
        prefix = provisioner.guard.prefix
        self.base = provisioner.derive(prefix, None).name
        """The test database name without a worker suffix: the workers of a
        pytest-xdist run share their templates."""

    def name(self, fingerprint: str) -> str:
        suffix = f"{TEMPLATE_MARK}{fingerprint}"
        return bounded_name(self.base, self.provisioner.name_limit - len(suffix)) + suffix

    @property
    def stem(self) -> str:
        return self.name("")

    def family(self) -> dict[str, Record]:
        """The templates of this test database on the server, by name."""
        stem = self.stem
        return {
            name: record
            for name, record in self.provisioner.records().items()
            if record.kind == KIND_TEMPLATE and name.startswith(stem)
        }

    def provide(
        self,
        name: str,
        fingerprint: str,
        inputs: Mapping[str, str],
        *,
        build: Callable[[], None],
        record: Record,
        rebuild: bool = False,
        describe_schema: str = "",
    ) -> Provided:
        """Create the test database ``name`` (recorded with ``record``) as a copy of the
        template of ``fingerprint``; when there is no trusted one (or ``rebuild`` asks for
        a new one), ``build`` creates and builds the test database itself, which is then
        copied into the template."""
        provisioner = self.provisioner
        template = self.name(fingerprint)
        with provisioner.exclusive(f"templates of {self.base}"):
            existing = provisioner.read_record(template) if provisioner.exists(template) else None
            trusted = (
                not rebuild
                and existing is not None
                and existing.kind == KIND_TEMPLATE
                and existing.state == STATE_CLEAN
                and existing.fingerprint == fingerprint
            )
            if trusted:
                assert existing is not None
                started = time.perf_counter()
                provisioner.clone(template, name, record)
                seconds = time.perf_counter() - started
                provisioner.write_record(
                    template, existing.with_(uses=existing.uses + 1, used=time.time())
                )
                runs = existing.uses
                ago = f"built {runs} run{'' if runs == 1 else 's'} ago"
                built = False
                note = f"schema copied from template {short(fingerprint)} in {seconds:.2f} s"
                note += f" ({ago})"
            else:
                why = self._why_build(template, existing, inputs, rebuild, describe_schema)
                if existing is not None or provisioner.exists(template):
                    provisioner.drop(template)
                started = time.perf_counter()
                build()
                seconds = time.perf_counter() - started
                problem = self._keep(name, template, fingerprint, inputs, record, seconds)
                built = True
                if problem is None:
                    note = f"template {short(fingerprint)} built in {seconds:.2f} s ({why})"
                else:
                    note = f"schema built in {seconds:.2f} s ({why}), not kept as a template: "
                    note += problem
            reaped = self.reap(keep=template)
        return Provided(template=template, built=built, note=note, reaped=reaped)

    def _keep(
        self,
        name: str,
        template: str,
        fingerprint: str,
        inputs: Mapping[str, str],
        record: Record,
        seconds: float,
    ) -> str | None:
        """Copy the test database ``name``, just built, into ``template``; what went wrong,
        in a few words, or None.

        The template appears only once the copy is complete (``CREATE DATABASE`` is
        atomic; a SQLite copy gets its record last), so a run killed meanwhile leaves
        nothing a later run would trust. A copy that fails (another session stayed on
        the new test database) costs this run nothing but the template.
        """
        kept = Record(
            kind=KIND_TEMPLATE,
            state=STATE_BUILDING,
            owner=record.owner,
            fingerprint=None,
            schema=record.schema,
            inputs=dict(inputs),
        )
        try:
            self.provisioner.clone(name, template, kept)
        except ProvisionError as error:
            if self.provisioner.exists(template):
                self.provisioner.drop(template)
            return str(error).split(". ")[0].removeprefix(PREFIX)
        self.provisioner.write_record(
            template,
            kept.with_(
                state=STATE_CLEAN,
                owner=None,
                fingerprint=fingerprint,
                uses=1,
                used=time.time(),
                seconds=seconds,
            ),
        )
        return None

    def _why_build(
        self,
        template: str,
        existing: Record | None,
        inputs: Mapping[str, str],
        rebuild: bool,
        describe_schema: str,
    ) -> str:
        if rebuild:
            return "create_db rebuilds the template"
        if existing is not None and existing.state == STATE_BUILDING:
            return "its template was left half-built by a run that stopped"
        if existing is not None:
            return "its template is not usable"
        if self.provisioner.exists(template):
            return "replaced a database not made by pytest-alchemy"
        others = sorted(
            (record for name, record in self.family().items() if name != template),
            key=lambda record: max(record.created, record.used),
            reverse=True,
        )
        if not others:
            return "no template yet"
        latest = others[0]
        changed = [
            INPUT_NAMES.get(key, f"{key} changed")
            for key in sorted(set(inputs) | set(latest.inputs))
            if inputs.get(key) != latest.inputs.get(key)
        ]
        if not changed:
            return "no template for this fingerprint"
        what = changed[0] if len(changed) == 1 else ", ".join(changed)
        if "schema" in inputs and inputs.get("schema") != latest.inputs.get("schema"):
            what = what.replace("schema changed", f"schema changed ({describe_schema})")
        return f"{what}: fingerprint {short(latest.fingerprint)} -> {short(self._fp(template))}"

    def _fp(self, template: str) -> str:
        return template[len(self.stem) :]

    def reap(self, *, keep: str) -> list[str]:
        """Drop templates of this test database beyond the newest ``self.keep`` (``keep``
        always stays), and any left half-built."""
        provisioner = self.provisioner
        reaped: list[str] = []
        clean: list[tuple[float, str]] = []
        for name, record in self.family().items():
            if name == keep:
                continue
            if record.state != STATE_CLEAN:
                if record.held_by_live_run():
                    continue
                provisioner.drop(name)
                reaped.append(name)
                continue
            clean.append((max(record.created, record.used), name))
        clean.sort(reverse=True)
        for _, name in clean[self.keep - 1 :]:
            provisioner.drop(name)
            reaped.append(name)
        return reaped
