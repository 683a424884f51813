"""factory_boy and polyfactory: factories write through the test's own session.

The factories of each generated project start with a session on a database nothing can
reach (a file in a missing directory): a row that reaches the test database went
through the binding. What the tests committed is checked out of band afterwards.
"""

from __future__ import annotations

import pytest

from .helpers import Project

FACTORIES = """
import factory
from factory.alchemy import SQLAlchemyModelFactory
from polyfactory.factories.sqlalchemy_factory import SQLAlchemyFactory
from sqlalchemy import create_engine
from sqlalchemy.orm import scoped_session, sessionmaker

from models import User

nowhere = scoped_session(sessionmaker(bind=create_engine(NOWHERE)))
SessionLocal = sessionmaker(bind=create_engine(NOWHERE))


class BaseFactory(SQLAlchemyModelFactory):
    class Meta:
        abstract = True
        sqlalchemy_session = nowhere
        sqlalchemy_session_persistence = PERSISTENCE


class UserFactory(BaseFactory):
    class Meta:
        model = User

    name = factory.Sequence(lambda n: f"user {n}")


class PolyUserFactory(SQLAlchemyFactory[User]):
    __session__ = SessionLocal
    __set_relationships__ = False


def app_signup_that_fails(name):
    # The app's own code, on its sessionmaker: writes, then rolls back.
    with SessionLocal() as session:
        session.add(User(name=name))
        session.flush()
        session.rollback()
"""

TESTS = """
import pytest
from sqlalchemy import func, select

import factories
from models import User

COUNT = select(func.count()).select_from(User)


def test_the_factory_writes_through_the_tests_session(alchemy_session):
    user = factories.UserFactory(name="ada")
    alchemy_session.flush()
    # One session, one identity map: the factory's object is the test's.
    assert alchemy_session.get(User, user.id) is user
    assert alchemy_session.scalar(COUNT) == 1


def test_a_factory_commit_then_a_rollback_in_the_app(alchemy_session):
    factories.UserFactory(name="kept")
    alchemy_session.commit()
    factories.app_signup_that_fails("undone")
    names = alchemy_session.scalars(select(User.name)).all()
    assert names == ["kept"]


def test_polyfactory_too(alchemy_session):
    user = factories.PolyUserFactory.create_sync(name="poly")
    assert alchemy_session.get(User, user.id) is user


@pytest.mark.asyncio
async def test_polyfactory_async(alchemy_async_session):
    user = await factories.PolyUserFactory.create_async(name="poly async")
    assert (await alchemy_async_session.get(User, user.id)) is user
    assert await alchemy_async_session.scalar(COUNT) == 1


def test_the_next_test_starts_clean(alchemy_session):
    assert alchemy_session.scalar(COUNT) == 0


def test_put_back_outside_a_database_test():
    assert factories.UserFactory._meta.sqlalchemy_session is factories.nowhere
    assert factories.PolyUserFactory.__session__ is factories.SessionLocal
    assert "__async_session__" not in vars(factories.PolyUserFactory)
"""


OWN_BASES = "factories:BaseFactory factories:PolyUserFactory"
LIBRARY_BASES = (
    "factory.alchemy:SQLAlchemyModelFactory "
    "polyfactory.factories.sqlalchemy_factory:SQLAlchemyFactory"
)
"""The libraries' own base classes: every factory of the project, whatever it derives from."""


@pytest.mark.parametrize(
    ("persistence", "bases"),
    [(None, OWN_BASES), ("flush", OWN_BASES), ("commit", OWN_BASES), ("commit", LIBRARY_BASES)],
)
def test_factories_bound_from_the_ini_file(
    project: Project, persistence: str | None, bases: str
) -> None:
    nowhere = f"sqlite:///{project.path / 'missing' / 'app.db'}"
    project.write(
        "factories.py",
        FACTORIES.replace("NOWHERE", repr(nowhere)).replace("PERSISTENCE", repr(persistence)),
    )
    project.ini(f"alchemy_app_sessions = {bases} factories:SessionLocal\nalchemy_keep_db = true")
    project.tests(TESTS)
    project.run("-p", "no:randomly").assert_outcomes(passed=6)
    assert project.sql("SELECT count(*) FROM users") == [(0,)]
    assert not (project.path / "missing").exists()


def test_a_factory_bound_in_one_test(project: Project) -> None:
    nowhere = f"sqlite:///{project.path / 'missing' / 'app.db'}"
    project.write(
        "factories.py",
        FACTORIES.replace("NOWHERE", repr(nowhere)).replace("PERSISTENCE", repr("commit")),
    )
    project.tests(
        """
        import factories
        from models import User


        def test_bound_here(alchemy_bind, alchemy_session):
            alchemy_bind(factories.UserFactory)
            user = factories.UserFactory()
            assert alchemy_session.get(User, user.id) is user


        def test_put_back():
            assert factories.UserFactory._meta.sqlalchemy_session is factories.nowhere
        """
    )
    project.run("-p", "no:randomly").assert_outcomes(passed=2)
