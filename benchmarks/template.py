"""Session start with the template cache: the schema built (cold) vs copied (cached).

Generates a project with ``--tables`` tables (each with a few columns, an index
and a foreign key to the previous one), then times how long the plugin takes to
prepare the test database, as its terminal summary reports it ("built (...) in
X s"): with ``alchemy_template_cache = false`` (the schema is built every run)
and with the cache on, after one warm-up run has built the template. Every run
is its own ``python -m pytest`` subprocess; the figure is the median over the
rounds, and the ratio is cached / cold.

    python benchmarks/template.py                       # embedded SQLite file
    python benchmarks/template.py --server postgresql   # a throwaway PostgreSQL, one for all runs
    python benchmarks/template.py --url postgresql+psycopg://user@host/app
    python benchmarks/template.py --build-seconds 3     # a build as slow as migrations
    python benchmarks/template.py --migrations 50       # an Alembic chain, one table each

Targets: cached start at most 0.1x the cold one for a large schema.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from sqlalchemy.engine import make_url

PREPARED = re.compile(r": (?:built|reused) \(.*?\) in (?P<seconds>[0-9.]+) s, ")
SCHEMA = re.compile(r"(?:built|copied from template [0-9a-f]+) in (?P<seconds>[0-9.]+) s")


SLOW = """

import time

from sqlalchemy import event
from sqlalchemy.engine import Connection


@event.listens_for(Base.metadata, "after_create")
def _slow_build(target, connection, **kw):
    # Stands for what a real build adds: migrations, data migrations, a slow hook.
    if isinstance(connection, Connection):  # not the fingerprint's mock engine
        time.sleep({seconds})
"""


def models(tables: int, build_seconds: float = 0.0) -> str:
    lines = [
        "from sqlalchemy import ForeignKey, Index, String",
        "from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column",
        "",
        "",
        "class Base(DeclarativeBase):",
        "    pass",
        "",
    ]
    for index in range(tables):
        parent = f"    parent_id: Mapped[int | None] = mapped_column(ForeignKey('t{index - 1}.id'))"
        lines += [
            "",
            f"class T{index}(Base):",
            f"    __tablename__ = 't{index}'",
            "    id: Mapped[int] = mapped_column(primary_key=True)",
            "    name: Mapped[str] = mapped_column(String(80), default='')",
            "    code: Mapped[str] = mapped_column(String(20), index=True, default='')",
            "    amount: Mapped[int] = mapped_column(default=0)",
            *([parent] if index else []),
            f"    __table_args__ = (Index('ix_t{index}_name_code', 'name', 'code'),)",
            "",
        ]
    text = "\n".join(lines)
    return text + (SLOW.format(seconds=build_seconds) if build_seconds else "")


ENV_PY = """
from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
"""

REVISION = """
import sqlalchemy as sa
from alembic import op

revision = {revision!r}
down_revision = {down!r}


def upgrade() -> None:
    op.create_table(
        "t{index}",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(80), nullable=False, server_default=""),
        sa.Column("code", sa.String(20), nullable=False, server_default=""),
        sa.Column("amount", sa.Integer, nullable=False, server_default="0"),
        {parent}
    )
    op.create_index("ix_t{index}_name_code", "t{index}", ["name", "code"])


def downgrade() -> None:
    op.drop_table("t{index}")
"""


def write_migrations(root: Path, count: int) -> None:
    """An Alembic project of ``count`` migrations, each making one table: the plugin
    finds alembic.ini and runs ``upgrade head`` to build the schema."""
    (root / "alembic.ini").write_text("[alembic]\nscript_location = migrations\n")
    versions = root / "migrations" / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    (root / "migrations" / "env.py").write_text(ENV_PY)
    (root / "migrations" / "script.py.mako").write_text("")
    for index in range(count):
        parent = (
            f'sa.Column("parent_id", sa.Integer, sa.ForeignKey("t{index - 1}.id")),'
            if index
            else ""
        )
        text = REVISION.format(
            revision=f"r{index:04d}",
            down=f"r{index - 1:04d}" if index else None,
            index=index,
            parent=parent,
        )
        (versions / f"r{index:04d}.py").write_text(text)


def write_project(
    root: Path,
    tables: int,
    cache: bool,
    extra: list[str],
    build_seconds: float = 0.0,
    migrations: int = 0,
) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "models.py").write_text(models(tables, build_seconds))
    if migrations:
        write_migrations(root, migrations)
    ini = [
        "[pytest]",
        "alchemy_metadata = models:Base",
        "pythonpath = .",
        f"alchemy_template_cache = {'true' if cache else 'false'}",
        *extra,
    ]
    (root / "pytest.ini").write_text("\n".join(ini) + "\n")
    (root / "test_start.py").write_text(
        textwrap.dedent(
            """
            def test_start(alchemy_connection):
                alchemy_connection.exec_driver_sql("SELECT 1")
            """
        )
    )


def prepare_seconds(root: Path, args: list[str]) -> tuple[float, float]:
    """Seconds to prepare the test database (all of it, the leak check's baseline
    included), and of those the schema step alone (built, or copied from the template)."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", *args]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
    found = PREPARED.search(result.stdout)
    schema = SCHEMA.search(result.stdout)
    if result.returncode != 0 or found is None or schema is None:
        raise SystemExit(f"run failed in {root}:\n{result.stdout}\n{result.stderr}")
    return float(found["seconds"]), float(schema["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--build-seconds",
        type=float,
        default=0.0,
        help="seconds a build takes on top of create_all (a stand-in for migrations)",
    )
    parser.add_argument(
        "--migrations",
        type=int,
        default=0,
        help="build the schema with an Alembic chain of this many migrations instead",
    )
    parser.add_argument("--url", help="database URL (default: a SQLite file per project)")
    parser.add_argument("--server", choices=["postgresql"], help="start a throwaway server")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="alchemy-template-bench-") as folder:
        base = Path(folder)
        extra: list[str] = []
        server = None
        if options.server:
            from pytest_alchemy import servers

            server = servers.start_server(options.server)
            options.url = server.url.set(drivername="postgresql+psycopg", database="app")
            options.url = options.url.render_as_string(hide_password=False)
        try:
            run(options, base, extra)
        finally:
            if server is not None:
                server.stop()


def run(options: argparse.Namespace, base: Path, extra: list[str]) -> None:
    roots = {}
    for cache in (False, True):
        root = base / ("cached" if cache else "cold")
        write_project(root, options.tables, cache, extra, options.build_seconds, options.migrations)
        roots[cache] = root

    def args(root: Path) -> list[str]:
        if options.url:
            # Each variant gets its own app database name on the server.
            url = make_url(options.url)
            named = url.set(database=f"{url.database or 'app'}_{root.name}")
            return ["--alchemy-url", named.render_as_string(hide_password=False)]
        return ["--alchemy-url", f"sqlite:///{root / 'data' / 'app.db'}"]

    prepare_seconds(roots[True], args(roots[True]))  # builds the template
    cold, cached = [], []
    for _ in range(options.rounds):
        cold.append(prepare_seconds(roots[False], args(roots[False])))
        cached.append(prepare_seconds(roots[True], args(roots[True])))
    where = f"throwaway {options.server}" if options.server else options.url or "SQLite"
    slow = f" + {options.build_seconds:g} s of build" if options.build_seconds else ""
    shape = f"{options.migrations} migrations" if options.migrations else f"{options.tables} tables"
    print(f"session start, {shape}{slow} on {where}, median of {options.rounds}:")
    print("                            schema step   preparing the database (with the baseline)")
    medians = {}
    for label, runs in (("cold (schema built)", cold), ("cached (template copied)", cached)):
        total = statistics.median(run[0] for run in runs)
        schema = statistics.median(run[1] for run in runs)
        medians[label] = (total, schema)
        print(f"  {label:<25} {schema * 1000:9.1f} ms   {total * 1000:9.1f} ms")
    (cold_total, cold_schema), (cached_total, cached_schema) = medians.values()
    print(
        f"  ratio cached / cold       {cached_schema / cold_schema:9.3f}      "
        f"{cached_total / cold_total:9.3f}"
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
