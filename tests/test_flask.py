"""Flask-SQLAlchemy 3: ``alchemy_flask_app`` serves the app, its engines (binds included)
and ``db.session`` are on the test's connection, views' commits stay inside the test.

The generated app's factory configures a database nothing can reach (a file in a
missing directory); the plugin makes its engines on the test database while the
factory runs, so ``db.create_all()`` there finds the schema, and binds every engine to
the test's connection afterwards. What the tests committed is checked out of band.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import INI, Project, sqlite_only

APP = '''
from flask import Flask, jsonify
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import func, select

db = SQLAlchemy()


class Author(db.Model):
    __tablename__ = "authors"
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(50), nullable=False)


class Visit(db.Model):
    """On a second bind: in tests it is the test database too."""

    __bind_key__ = "audit"
    __tablename__ = "visits"
    id = db.Column(db.Integer, primary_key=True)
    path = db.Column(db.String(50), nullable=False)


def create_app():
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = NOWHERE
    app.config["SQLALCHEMY_BINDS"] = {"audit": NOWHERE_AUDIT}
    db.init_app(app)
    with app.app_context():
        db.create_all()  # what many apps do at creation: harmless in tests

    @app.post("/authors/<name>")
    def add_author(name):
        db.session.add(Author(name=name))
        db.session.add(Visit(path=f"/authors/{name}"))
        db.session.commit()
        return jsonify(authors=db.session.scalar(select(func.count()).select_from(Author)))

    @app.get("/authors")
    def count_authors():
        return jsonify(authors=Author.query.count(), visits=Visit.query.count())

    return app
'''

TESTS = """
import pytest
from pathlib import Path
from sqlalchemy import func, select

from app import Author, Visit, db


@pytest.fixture
def client(alchemy_flask_app):
    return alchemy_flask_app.test_client()


def test_a_view_commits_inside_the_test(client):
    assert client.post("/authors/ada").json == {"authors": 1}
    # db.session works in the test itself: the plugin pushed an application context.
    assert db.session.scalar(select(func.count()).select_from(Author)) == 1
    assert Visit.query.count() == 1


def test_the_next_test_starts_clean(client):
    assert client.get("/authors").json == {"authors": 0, "visits": 0}


def test_engines_are_the_tests(alchemy_flask_app, alchemy_connection):
    with alchemy_flask_app.app_context():
        for engine in db.engines.values():
            with engine.connect() as connection:
                assert connection.connection.dbapi_connection is (
                    alchemy_connection.connection.dbapi_connection
                )


def test_a_failing_test(client):
    client.post("/authors/grace")
    raise RuntimeError("the test fails after its request")


def test_put_back_after_a_failure(client):
    assert client.get("/authors").json == {"authors": 0, "visits": 0}
"""


def flask_project(project: Project, extra_ini: str = "") -> None:
    nowhere = f"sqlite:///{project.path / 'missing' / 'app.db'}"
    audit = f"sqlite:///{project.path / 'missing' / 'audit.db'}"
    app = APP.replace("NOWHERE_AUDIT", repr(audit)).replace("NOWHERE", repr(nowhere))
    project.write("app.py", app)
    # No alchemy_metadata: Flask-SQLAlchemy's models (both binds) are found.
    ini = INI.replace("alchemy_metadata = models:Base\n", "")
    project.write(
        "pytest.ini", ini.format(extra=f"alchemy_flask_app = app:create_app\n{extra_ini}")
    )
    project.write("conftest.py", "import app\n")


def test_a_flask_sqlalchemy_app(project: Project) -> None:
    flask_project(project, "alchemy_keep_db = true")
    project.tests(TESTS)
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["*the test fails after its request*"])
    assert "schema create_all (2 tables)" in result.stdout.str()
    # Out of band: the views committed inside each test only.
    assert project.sql("SELECT count(*) FROM authors") == [(0,)]
    assert project.sql("SELECT count(*) FROM visits") == [(0,)]
    assert not (project.path / "missing").exists()


@sqlite_only
def test_a_factory_that_raises_is_said(project: Project) -> None:
    flask_project(project)
    project.write("broken.py", "def create_app():\n    raise KeyError('SECRET_KEY')\n")
    project.write("pytest.ini", INI.format(extra="alchemy_flask_app = broken:create_app"))
    project.tests("def test_it(alchemy_flask_app):\n    pass\n")
    result = project.run()
    result.assert_outcomes(errors=1)
    flat = " ".join(result.stdout.str().split())
    assert "alchemy_flask_app = 'broken:create_app': calling the app factory failed: KeyError" in (
        flat
    )


@sqlite_only
def test_without_the_setting_the_fixture_says_what_to_set(project: Project) -> None:
    project.tests("def test_it(alchemy_flask_app):\n    pass\n")
    result = project.run()
    result.assert_outcomes(errors=1)
    assert "needs alchemy_flask_app = myapp:create_app" in " ".join(result.stdout.str().split())


@sqlite_only
@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        (
            "from flask import Flask\napp = Flask('bare')\n",
            "has no Flask-SQLAlchemy extension",
        ),
        (
            "from flask_sqlalchemy import SQLAlchemy\napp = SQLAlchemy()\ndel app._app_engines\n",
            "this is Flask-SQLAlchemy 2.x",
        ),
    ],
    ids=["no-extension", "version-2"],
)
def test_apps_that_cannot_be_bound(project: Project, setup: str, fragment: str) -> None:
    project.write("other.py", setup)
    project.tests(
        """
        import other


        def test_it(alchemy_bind):
            alchemy_bind(other.app)
        """
    )
    result = project.run()
    result.assert_outcomes(failed=1)
    assert fragment in " ".join(result.stdout.str().split())


MIGRATE_APP = """
from flask import Flask, jsonify
from flask_migrate import Migrate, upgrade
from flask_sqlalchemy import SQLAlchemy

db = SQLAlchemy()


class Author(db.Model):
    __tablename__ = "authors"
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(50), nullable=False)


def create_app():
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = NOWHERE
    db.init_app(app)
    Migrate(app, db)
    with app.app_context():
        upgrade()  # migrate at start-up, as many deployments do

    @app.post("/authors/<name>")
    def add_author(name):
        db.session.add(Author(name=name))
        db.session.commit()
        return jsonify(authors=Author.query.count())

    return app
"""

REVISION = '''
"""authors"""
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    with open(Path(__file__).parents[2] / "ran.txt", "a") as ran:
        ran.write("upgrade\\n")
    op.create_table(
        "authors",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50), nullable=False),
    )


def downgrade():
    op.drop_table("authors")
'''

MIGRATE_TESTS = """
import pytest
from pathlib import Path


@pytest.fixture
def client(alchemy_flask_app):
    return alchemy_flask_app.test_client()


@pytest.mark.parametrize("turn", range(3))
def test_each_test_starts_clean(client, turn):
    assert client.post("/authors/ada").json == {"authors": 1}
"""


OLDER_ENV = """
from alembic import context
from flask import current_app
from sqlalchemy import engine_from_config, pool

# As Flask-Migrate's env.py of earlier years: the app's URI goes through Alembic's
# config, where a % (an escaped character of the URL) is an interpolation error.
config = context.config
config.set_main_option("sqlalchemy.url", current_app.config.get("SQLALCHEMY_DATABASE_URI"))
target_metadata = current_app.extensions["migrate"].db.metadata

connectable = engine_from_config(
    config.get_section(config.config_ini_section), prefix="sqlalchemy.", poolclass=pool.NullPool
)
with connectable.connect() as connection:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
"""


@pytest.mark.parametrize("env", ["current", "older"])
def test_flask_migrate_upgrade_at_app_creation(project: Project, env: str) -> None:
    """Flask-Migrate's migrations build the schema once (its env.py runs inside the
    app's context, its engine on the test database); the app's own upgrade() at
    creation finds them applied, and no test runs them again."""
    import flask_migrate

    templates = Path(flask_migrate.__file__).parent / "templates" / "flask"
    nowhere = f"sqlite:///{project.path / 'missing' / 'app.db'}"
    project.write("app.py", MIGRATE_APP.replace("NOWHERE", repr(nowhere)))
    ini = (templates / "alembic.ini.mako").read_text()
    project.write("migrations/alembic.ini", ini)
    env_py = (templates / "env.py").read_text() if env == "current" else OLDER_ENV
    project.write("migrations/env.py", env_py)
    project.write("migrations/script.py.mako", (templates / "script.py.mako").read_text())
    project.write("migrations/versions/0001_authors.py", REVISION)
    base = INI.replace("alchemy_metadata = models:Base\n", "")
    project.write("pytest.ini", base.format(extra="alchemy_flask_app = app:create_app"))
    project.write("models.py", "")
    project.tests(MIGRATE_TESTS)
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(passed=3)
    assert "schema alembic (head 0001" in result.stdout.str()
    assert (project.path / "ran.txt").read_text() == "upgrade\n"
    assert not (project.path / "missing").exists()


def test_the_extension_listed_in_app_sessions(project: Project) -> None:
    """An app made at import (not through alchemy_flask_app) whose database is the test
    database's (alchemy_env): listing its extension object binds its engines."""
    app = APP.replace("NOWHERE_AUDIT", "os.environ['DATABASE_URL']").replace(
        "NOWHERE", "os.environ['DATABASE_URL']"
    )
    # Made at import, before the test database exists: no create_all() at creation here.
    app = app.replace(
        "        db.create_all()  # what many apps do at creation: harmless in tests\n",
        "        pass\n",
    )
    project.write("app.py", "import os\n" + app + "\napp = create_app()\n")
    ini = INI.replace("alchemy_metadata = models:Base\n", "")
    extra = "alchemy_env = DATABASE_URL\nalchemy_app_sessions = app:db\nalchemy_keep_db = true"
    project.write("pytest.ini", ini.format(extra=extra))
    project.write("conftest.py", "import app\n")
    project.tests(
        """
        from app import Author, app, db


        def test_writes(alchemy_session):
            client = app.test_client()
            assert client.post("/authors/ada").json == {"authors": 1}
            with app.app_context():
                assert Author.query.count() == 1


        def test_clean(alchemy_session):
            with app.app_context():
                assert Author.query.count() == 0
        """
    )
    project.run("-p", "no:randomly").assert_outcomes(passed=2)
    assert project.sql("SELECT count(*) FROM authors") == [(0,)]


MODULE_APP = """
import os

from flask import Flask, jsonify
from flask_sqlalchemy import SQLAlchemy

db = SQLAlchemy()


class Note(db.Model):
    __tablename__ = "notes"
    id = db.Column(db.Integer, primary_key=True)
    text = db.Column(db.String(50), nullable=False)


app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
db.init_app(app)
with app.app_context():
    db.create_all()  # at import: before the first database test


@app.post("/notes/<text>")
def add_note(text):
    db.session.add(Note(text=text))
    db.session.commit()
    return jsonify(notes=Note.query.count())
"""


def test_a_module_level_app_that_creates_tables_at_import(project: Project) -> None:
    project.write("app.py", MODULE_APP)
    ini = INI.replace("alchemy_metadata = models:Base\n", "alchemy_metadata = app:db\n")
    project.write(
        "pytest.ini", ini.format(extra="alchemy_env = DATABASE_URL\nalchemy_app_sessions = app:app")
    )
    project.tests(
        """
        from app import app


        def test_one(alchemy_session):
            assert app.test_client().post("/notes/a").json == {"notes": 1}


        def test_two(alchemy_session):
            assert app.test_client().post("/notes/b").json == {"notes": 1}
        """
    )
    if project.backend == "sqlite":
        # A path relative to the working directory, as a developer writes it.
        (project.path / "data").mkdir()
        with (project.path / "pytest.ini").open("a") as ini_file:
            ini_file.write("alchemy_url = sqlite:///data/app.db\n")
    result = project.run("-p", "no:randomly", url=project.backend != "sqlite")
    if project.backend == "sqlite":
        # The app was given the file by its absolute path: Flask-SQLAlchemy resolves a
        # relative one against the app's instance folder, another file.
        result.assert_outcomes(passed=2)
        assert not (project.path / "instance").exists()
    else:
        # Importing the app reached for the test database before it was made.
        assert result.ret != 0
        flat = " ".join(result.stdout.str().split())
        assert (
            "Code that ran before the tests (most often at import, while pytest collected "
            f"them) connected to the test database {project.test_name}"
        ) in flat
        assert "into an app factory or a start-up handler" in flat
