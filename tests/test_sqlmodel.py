"""SQLModel apps: the sessions the plugin hands out are SQLModel's.

When the app's tables are SQLModel's, ``alchemy_session``, ``alchemy_sessionmaker``
and their async twins give ``sqlmodel.Session`` and SQLModel's ``AsyncSession``
(``exec()`` works), and the seeding function gets the session class it is
annotated with; ``alchemy_session_options`` can still choose another class.
"""

from __future__ import annotations

import pytest

from .helpers import INI, Project, sqlite_only

MODELS = """
from sqlmodel import Field, SQLModel


class Hero(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
"""

SEED = """
from sqlmodel import Session, select

from models import Hero


def init_db(session: Session) -> None:
    # exec() is SQLModel's: a plain SQLAlchemy Session has none.
    if session.exec(select(Hero).where(Hero.name == "seed")).first() is None:
        session.add(Hero(name="seed"))
"""

TESTS = """
import pytest
import sqlmodel
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import Hero


def test_session_is_sqlmodels(alchemy_session):
    assert isinstance(alchemy_session, sqlmodel.Session)
    alchemy_session.add(Hero(name="ada"))
    alchemy_session.commit()
    names = alchemy_session.exec(select(Hero.name).order_by(Hero.id)).all()
    assert names == ["seed", "ada"]


def test_sessionmaker_makes_sqlmodel_sessions(alchemy_sessionmaker):
    with alchemy_sessionmaker() as session:
        assert isinstance(session, sqlmodel.Session)
        assert session.exec(select(Hero.name)).all() == ["seed"]


@pytest.mark.asyncio
async def test_async_session_is_sqlmodels(alchemy_async_session):
    assert isinstance(alchemy_async_session, AsyncSession)
    alchemy_async_session.add(Hero(name="grace"))
    await alchemy_async_session.commit()
    found = await alchemy_async_session.exec(select(Hero.name).order_by(Hero.id))
    assert found.all() == ["seed", "grace"]


@pytest.mark.asyncio
async def test_async_sessionmaker_too(alchemy_async_sessionmaker):
    async with alchemy_async_sessionmaker() as session:
        assert isinstance(session, AsyncSession)
        assert (await session.exec(select(Hero.name))).all() == ["seed"]
"""


def sqlmodel_project(project: Project, extra: str = "") -> None:
    project.write("models.py", MODELS)
    project.write("seed.py", SEED)
    project.write("conftest.py", "import models\n")
    # No alchemy_metadata: SQLModel's is found on its own.
    ini = INI.replace("alchemy_metadata = models:Base\n", "")
    project.write("pytest.ini", ini.format(extra=f"alchemy_seed = seed:init_db\n{extra}"))


@pytest.mark.parametrize("isolation", ["savepoint", "truncate", "recreate"])
def test_sessions_are_sqlmodels(project: Project, isolation: str) -> None:
    sqlmodel_project(project, f"alchemy_isolation = {isolation}\nalchemy_keep_db = true")
    project.tests(TESTS)
    project.run("-p", "no:randomly").assert_outcomes(passed=4)
    # Checked out of band: what the tests committed is gone, the seed row (written
    # through exec() on the session the seeding got) is what the database holds.
    assert project.sql("SELECT name FROM hero") == [("seed",)]


@sqlite_only
def test_session_options_choose_another_class(project: Project) -> None:
    sqlmodel_project(project)
    project.write(
        "conftest.py",
        """
        import pytest
        from sqlalchemy.orm import Session

        import models


        class Mine(Session):
            pass


        @pytest.fixture(scope="session")
        def alchemy_session_options():
            return {"class_": Mine}
        """,
    )
    project.tests(
        """
        import sqlmodel

        from conftest import Mine


        def test_mine(alchemy_session):
            assert isinstance(alchemy_session, Mine)
            assert not isinstance(alchemy_session, sqlmodel.Session)
        """
    )
    project.run().assert_outcomes(passed=1)


@sqlite_only
def test_a_declarative_app_with_sqlmodel_installed_keeps_plain_sessions(
    project: Project,
) -> None:
    """sqlmodel imported but holding no table: the app is not a SQLModel app."""
    project.write("conftest.py", "import sqlmodel\nimport models\n")
    project.tests(
        """
        from sqlalchemy.orm import Session


        def test_plain(alchemy_session):
            assert type(alchemy_session) is Session
        """
    )
    project.run().assert_outcomes(passed=1)


@sqlite_only
def test_async_seeding_gets_sqlmodels_async_session(project: Project) -> None:
    sqlmodel_project(project, "alchemy_keep_db = true")
    project.write(
        "seed.py",
        """
        from sqlmodel import select

        from models import Hero


        async def init_db(session):
            if (await session.exec(select(Hero))).first() is None:
                session.add(Hero(name="seed"))
        """,
    )
    project.tests(
        """
        from sqlmodel import select

        from models import Hero


        def test_seeded(alchemy_session):
            assert [hero.name for hero in alchemy_session.exec(select(Hero))] == ["seed"]
        """
    )
    project.run().assert_outcomes(passed=1)
    assert project.sql("SELECT name FROM hero") == [("seed",)]
