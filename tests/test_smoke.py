"""First end-to-end checks: a generated project's tests run isolated on each backend."""

from __future__ import annotations

from .helpers import Project


def test_commit_in_one_test_is_gone_in_the_next(project: Project) -> None:
    project.tests(
        """
        from sqlalchemy import func, select
        from models import User

        def test_writes(alchemy_session):
            alchemy_session.add(User(name="a"))
            alchemy_session.commit()
            assert alchemy_session.scalar(select(func.count()).select_from(User)) == 1

        def test_sees_nothing(alchemy_session):
            assert alchemy_session.scalar(select(func.count()).select_from(User)) == 0
        """
    )
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(passed=2)
    assert not project.exists(), "the test database is dropped at the end"
