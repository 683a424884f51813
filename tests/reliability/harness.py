"""Run a generated reliability project in a pytest subprocess and judge every test.

Shared by ``test_randomized.py`` and ``benchmarks/soak.py``: write the files of a
:class:`~generator.Generated` into a directory, run ``python -m pytest`` on it with a
JUnit XML report, then compare each test's actual outcome with the expected one and
collect the violations the out-of-band checks wrote.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from .generator import BREACH_PHRASE, LEAK_PHRASE, LOG_VARIABLE, MODULE, Generated

ASYNC_DRIVERS = ("asyncpg", "psycopg")
"""The async PostgreSQL drivers: a run configured with psycopg gets its async twin."""
JUNIT = "reliability-junit.xml"
LOG = "reliability-violations.jsonl"
LEAK_LIST = re.compile(LEAK_PHRASE + r": (?P<tables>.*?)\. Something wrote", re.DOTALL)
TABLE_COUNTS = re.compile(r"^(?P<name>.+?) \((?P<before>\d+) -> (?P<after>\d+) rows")
TABLE_CREATED = re.compile(r"^(?P<name>.+?): table created \((?P<after>\d+) rows\)")


@dataclass
class Actual:
    outcome: str
    """One of ``generator.OUTCOMES``, or ``error`` (set-up, or a teardown error that is
    neither a leak nor a breach; ``failed+error`` after a failed test), ``skipped``."""
    text: str = ""
    leaked: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass
class Mismatch:
    nodeid: str
    expected: str
    actual: str
    why: str
    operations: list[str]

    def describe(self) -> str:
        return (
            f"{self.nodeid}: expected {self.expected}, got {self.actual} "
            f"(operations: {', '.join(self.operations)}): {self.why}"
        )


@dataclass
class Report:
    generated: Generated
    returncode: int
    seconds: float
    actual: dict[str, Actual]
    mismatches: list[Mismatch]
    violations: list[dict[str, Any]]
    notes: int
    output: str
    drivers: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches and not self.violations and self.returncode in (0, 1)

    def counts(self) -> Counter[str]:
        return Counter(actual.outcome for actual in self.actual.values())

    def expected(self) -> Counter[str]:
        return Counter(test.expected for test in self.generated.tests)

    def summary(self) -> str:
        variant = self.generated.variant

        def show(counts: Counter[str]) -> str:
            return ", ".join(f"{count} {name}" for name, count in sorted(counts.items()))

        return (
            f"{self.generated.id} ({', '.join(filter(None, [*self.drivers, variant])) or '-'}) "
            f"seed {self.generated.seed}: "
            f"{len(self.generated.tests)} tests "
            f"in {self.seconds:.1f} s; expected {show(self.expected())}; got {show(self.counts())}"
            + f"; {len(self.mismatches)} mismatches, {len(self.violations)} out-of-band "
            f"violations, {self.notes} tests advanced a sequence (not reset by design)"
        )

    def failures(self, limit: int = 20) -> str:
        lines = [mismatch.describe() for mismatch in self.mismatches[:limit]]
        lines += [json.dumps(violation) for violation in self.violations[:limit]]
        if self.returncode not in (0, 1):
            lines.append(f"pytest exited with {self.returncode}:\n{self.output[-4000:]}")
        return "\n".join(lines)


def postgresql_url(server: Any, database: str, mode: str, async_driver: str = "asyncpg") -> str:
    """The URL a run on the PostgreSQL server ``server`` is configured with."""
    asyncpg = mode == "async" and async_driver == "asyncpg"
    driver = "postgresql+asyncpg" if asyncpg else "postgresql+psycopg"
    return str(
        server.set(drivername=driver, database=database).render_as_string(hide_password=False)
    )


def write_project(generated: Generated, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, source in generated.files.items():
        (directory / name).write_text(source, encoding="utf-8")


def run(
    generated: Generated,
    directory: Path,
    url: str,
    *,
    timeout: float = 1800,
    args: tuple[str, ...] = (),
) -> Report:
    """Write the project into ``directory``, run it against ``url`` and judge it."""
    write_project(generated, directory)
    junit = directory / JUNIT
    log = directory / LOG
    for path in (junit, log):
        path.unlink(missing_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("ALCHEMY_")}
    env[LOG_VARIABLE] = str(log)
    env.pop("PYTEST_ADDOPTS", None)
    command = [
        sys.executable,
        "-m",
        "pytest",
        "--alchemy-url",
        url,
        "-p",
        "no:cacheprovider",
        "-q",
        # pytest's own traceback style parses the whole (large) generated module again
        # for every failing test: native tracebacks cost nothing.
        "--tb=native",
        f"--junitxml={junit}",
        *args,
    ]
    started = time.perf_counter()
    completed = subprocess.run(
        command,
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    seconds = time.perf_counter() - started
    output = completed.stdout + completed.stderr
    actual = parse_junit(junit) if junit.exists() else {}
    violations, notes, drivers = read_log(log)
    mismatches = judge(generated, actual)
    return Report(
        generated,
        completed.returncode,
        seconds,
        actual,
        mismatches,
        violations,
        notes,
        output,
        drivers,
    )


def _table(name: str) -> str:
    plain = name.strip()
    if plain.startswith("public."):
        plain = plain[len("public.") :]
    return plain.strip('"')


def parse_leaks(text: str) -> dict[str, tuple[int, int]]:
    """The tables (and row counts) a leak message names."""
    found: dict[str, tuple[int, int]] = {}
    for match in LEAK_LIST.finditer(text):
        for part in match.group("tables").split("; "):
            created = TABLE_CREATED.match(part)
            if created:
                found[_table(created.group("name"))] = (0, int(created.group("after")))
                continue
            counted = TABLE_COUNTS.match(part)
            if counted:
                found[_table(counted.group("name"))] = (
                    int(counted.group("before")),
                    int(counted.group("after")),
                )
            else:
                found[_table(part)] = (-1, -1)
    return found


def parse_junit(path: Path) -> dict[str, Actual]:
    """Each test's outcome. A test that fails and then errors at teardown has two
    ``testcase`` elements of the same name (one with the failure, one with the error)."""
    cases: dict[str, list[ElementTree.Element]] = {}
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        classname = case.get("classname", "")
        nodeid = f"{classname.replace('.', '/')}.py::{case.get('name')}"
        cases.setdefault(nodeid, []).extend(case)
    return {nodeid: _outcome(children) for nodeid, children in cases.items()}


def _outcome(children: list[ElementTree.Element]) -> Actual:
    failures = [child for child in children if child.tag == "failure"]
    errors = [child for child in children if child.tag == "error"]
    skipped = [child for child in children if child.tag == "skipped"]
    teardown = [e for e in errors if (e.get("message") or "").startswith("failed on teardown")]
    setup = [e for e in errors if e not in teardown]
    text = "\n".join(_text(e) for e in teardown)
    leaked = parse_leaks(text)
    if BREACH_PHRASE in text:
        after = "breach"
    elif LEAK_PHRASE in text:
        after = "leak"
    else:
        after = "error" if teardown else ""
    if setup:
        return Actual("error", "\n".join(_text(e) for e in setup))
    if failures:
        outcome = "failed" + (f"+{after}" if after else "")
        return Actual(outcome, "\n".join([_text(failures[0]), text]).strip(), leaked)
    if after:
        return Actual(after, text, leaked)
    if skipped:
        return Actual("skipped", _text(skipped[0]))
    return Actual("pass")


def _text(element: ElementTree.Element) -> str:
    return f"{element.get('message') or ''}\n{element.text or ''}".strip()


def read_log(path: Path) -> tuple[list[dict[str, Any]], int, list[str]]:
    """The violations, how many tests advanced a sequence, and the drivers the tests used."""
    violations: list[dict[str, Any]] = []
    notes = 0
    drivers: list[str] = []
    if not path.exists():
        return violations, notes, drivers
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if entry.get("kind") == "violation":
            violations.append(entry)
        elif entry.get("kind") == "driver":
            drivers.append(str(entry.get("what")))
        else:
            notes += 1
    return violations, notes, sorted(set(drivers))


def judge(generated: Generated, actual: dict[str, Actual]) -> list[Mismatch]:
    mismatches = []
    for test in generated.tests:
        got = actual.get(test.nodeid)
        if got is None:
            why = "no result in the JUnit report (did pytest crash or hang?)"
            mismatches.append(Mismatch(test.nodeid, test.expected, "missing", why, test.operations))
            continue
        if got.outcome != test.expected:
            mismatches.append(
                Mismatch(test.nodeid, test.expected, got.outcome, got.text[:3000], test.operations)
            )
        elif got.leaked != test.leaked:
            why = f"the leak message names {got.leaked}, expected {test.leaked}"
            mismatches.append(
                Mismatch(test.nodeid, test.expected, got.outcome, why, test.operations)
            )
    module = MODULE.removesuffix(".py")
    known = {test.nodeid for test in generated.tests}
    for nodeid, got in actual.items():
        if nodeid not in known and nodeid.startswith(module):
            mismatches.append(Mismatch(nodeid, "-", got.outcome, "unexpected test", []))
    return mismatches
