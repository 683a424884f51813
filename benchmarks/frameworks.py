"""What a FastAPI request test costs: pytest-alchemy's override against the hand-written one.

Usage::

    .venv/bin/python benchmarks/frameworks.py [--tests 300] [--backend sqlite|postgresql|all]
                                              [--rounds 3] [--warmup 1] [--keep DIR]

Generates one FastAPI app in the shape of the project templates (a module-global
engine and ``SessionLocal``, a ``get_db`` dependency, a route that adds a user,
commits and counts the users) and N tests, each "one POST through ``TestClient``,
expect 1 user" (the count proves every variant isolates), written these ways:

(a) pytest-alchemy: a ``client`` fixture calling ``alchemy_override(app, get_db)``
    (savepoint isolation, leak check on, the plugin's defaults);
(b) the hand-written recipe of the tutorials: a session-scoped engine with
    ``create_all``; per test a connection, an outer transaction, a ``Session`` joined
    with ``join_transaction_mode="create_savepoint"`` put into
    ``app.dependency_overrides``, all undone afterwards (on SQLite with SQLAlchemy's
    pysqlite fix and ``check_same_thread=False``, since the route runs in a worker
    thread); ``-p no:alchemy``;
(c) (a) and (b) in one run, taking turns test by test;
(d) the same with ``alchemy_override(app, get_db, shared=True)``: every request gets the
    test's own session, as the recipe's does;
(-) a request to a route without a database, no fixtures: what FastAPI's
    ``TestClient`` costs per test, for scale.

The app's own engine points at a database nothing reaches: every variant must
override it. Columns as in ``savepoint.py`` (``ratio`` against the recipe).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace

from _harness import MODELS, SQLITE_FIX, Benchmark, Target, Variant, paired_variant, test_module
from _harness import main as run

APP = """

from fastapi import Depends, FastAPI
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session, sessionmaker

engine = create_engine("sqlite:////nonexistent/app.db")  # the app's own database
SessionLocal = sessionmaker(engine)


def get_db():
    with SessionLocal() as session:
        yield session


app = FastAPI()


@app.post("/users/{name}")
def create_user(name: str, db: Session = Depends(get_db)):
    db.add(User(name=name, email=f"{name}@example.com"))
    db.commit()
    return {"users": db.scalar(select(func.count()).select_from(User))}


@app.get("/ping")
def ping():
    return {"ok": True}
"""

TESTS_HEADER = ""

PING_HEADER = """\
from fastapi.testclient import TestClient

from models import app

CLIENT = TestClient(app)
"""

PING_BODY = """\
def NAME():
    assert CLIENT.get("/ping").json() == {"ok": True}
"""

TEST_BODY = """\
def NAME(FIXTURE):
    assert FIXTURE.post("/users/ada").json() == {"users": 1}
"""

PLUGIN_CLIENT = """\
@pytest.fixture
def NAME(alchemy_override):
    alchemy_override(app, get_db)
    return TestClient(app)
"""

PLUGIN_SHARED_CLIENT = PLUGIN_CLIENT.replace("get_db)", "get_db, shared=True)")

RECIPE_CLIENT = """\
@pytest.fixture
def NAME(engine):
    connection = engine.connect()
    outer = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint")
    app.dependency_overrides[get_db] = lambda: session
    yield TestClient(app)
    app.dependency_overrides.pop(get_db, None)
    session.close()
    outer.rollback()
    connection.close()
"""

CONFTEST = '''\
"""CLIENTS"""

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session

from models import Base, app, get_db

URL = {url!r}
{sqlite_fix}

@pytest.fixture(scope="session")
def engine():
    engine = create_engine(URL, {options})
    {install_fix}Base.metadata.create_all(engine)
    yield engine
    Base.metadata.drop_all(engine)
    engine.dispose()


{clients}'''


def conftest(url: str, clients: dict[str, str], doc: str) -> str:
    """The variant's conftest: the recipe's engine (unused where only the plugin's client
    is asked for) and each ``name: fixture`` of ``clients``."""
    sqlite = url.startswith("sqlite")
    return CONFTEST.replace("CLIENTS", doc).format(
        url=url,
        sqlite_fix=SQLITE_FIX if sqlite else "",
        options='connect_args={"check_same_thread": False}' if sqlite else "",
        install_fix="_emit_begin_ourselves(engine)\n    " if sqlite else "",
        clients="\n\n".join(body.replace("NAME", name) for name, body in clients.items()),
    )


def variants(target: Target, root: str, tests: int) -> list[Variant]:
    def recipe_url(key: str) -> str:
        if target.name == "sqlite":
            return f"sqlite:///{root}/fw_{key}.db"
        return target.recipe_url.replace("/postgres?", f"/bench_fw_{key}?")

    def module(fixture: str) -> str:
        return test_module(TESTS_HEADER, TEST_BODY.replace("FIXTURE", fixture), tests)

    models = MODELS + APP
    ini = {"alchemy_metadata": "models:Base"}
    if target.plugin_url is not None:
        ini["alchemy_url"] = target.plugin_url
    plugin = frozenset({"alchemy"})

    def in_turns(key: str, labels: tuple[str, str, str], client: str, doc: str) -> Variant:
        """The plugin's ``client`` fixture and the recipe's, taking turns in one run."""
        clients = {"alchemy_client": client, "recipe_client": RECIPE_CLIENT}
        paired = paired_variant(
            key,
            labels,
            conftest(recipe_url(key), clients, doc),
            TESTS_HEADER,
            TEST_BODY,
            ("alchemy_client", "recipe_client"),
            tests,
            ini=ini,
            plugins=plugin,
        )
        return replace(paired, models=models)

    return [
        Variant(
            "plugin",
            "(a) pytest-alchemy alchemy_override(app, get_db)",
            conftest(recipe_url("plugin"), {"client": PLUGIN_CLIENT}, "The plugin's override."),
            module("client"),
            ini=ini,
            plugins=plugin,
            baseline="recipe",
            models=models,
        ),
        Variant(
            "recipe",
            "(b) hand-written savepoint override",
            conftest(recipe_url("recipe"), {"client": RECIPE_CLIENT}, "The tutorials' recipe."),
            module("client"),
            models=models,
        ),
        in_turns(
            "paired",
            (
                "(c) (a) and (b) taking turns in one run",
                "(c) in turns: pytest-alchemy",
                "(c) in turns: hand-written override",
            ),
            PLUGIN_CLIENT,
            "Both clients: the plugin's override and the hand-written one.",
        ),
        in_turns(
            "shared",
            (
                "(d) shared=True and (b) taking turns in one run",
                "(d) in turns: pytest-alchemy shared=True",
                "(d) in turns: hand-written override",
            ),
            PLUGIN_SHARED_CLIENT,
            "Both clients: the plugin's override sharing the test's session, and the recipe.",
        ),
        Variant(
            "empty",
            "(-) a request without a database (TestClient alone)",
            '"""No fixtures: what a TestClient request costs."""\n',
            test_module(PING_HEADER, PING_BODY, tests),
            models=models,
        ),
    ]


RECIPE_DATABASES = ("bench_fw_plugin", "bench_fw_recipe", "bench_fw_paired", "bench_fw_shared")


def main(argv: Sequence[str] | None = None) -> int:
    return run(
        Benchmark(
            description=__doc__.split("\n\n")[0],
            sqlite_title="SQLite file (pysqlite)",
            postgresql_drivers=("psycopg",),
            recipe_databases=RECIPE_DATABASES,
            variants=variants,
            packages=("fastapi", "httpx", "psycopg", "pytest-alchemy"),
        ),
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
