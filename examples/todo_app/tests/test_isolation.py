"""What pytest-alchemy guarantees: every test starts from the same empty tables.

The app commits for real as far as it can tell; those commits are savepoints
inside the test's transaction, which is rolled back when the test ends.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker
from todo_app.models import User

from pytest_alchemy import DatabaseInfo


def count_users(session: Session) -> int | None:
    return session.scalar(select(func.count()).select_from(User))


def test_a_commit_through_the_api(client: TestClient, alchemy_session: Session) -> None:
    response = client.post("/users", json={"email": "ada@example.com", "name": "Ada"})

    assert response.status_code == 201
    assert count_users(alchemy_session) == 1


def test_b_the_next_test_sees_empty_tables(client: TestClient, alchemy_session: Session) -> None:
    assert count_users(alchemy_session) == 0
    assert client.get("/users").json() == []


@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_same_email_in_every_test(client: TestClient, attempt: int) -> None:
    """Whatever order these run in, each one starts without the previous one's user."""
    response = client.post("/users", json={"email": "ada@example.com", "name": f"Ada {attempt}"})

    assert response.status_code == 201
    assert len(client.get("/users").json()) == 1


def test_raw_sql_on_the_connection_is_seen_by_the_app(
    client: TestClient, alchemy_connection: Connection
) -> None:
    alchemy_connection.execute(
        text(
            "INSERT INTO users (email, name, created_at, updated_at) "
            "VALUES ('ada@example.com', 'Ada', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        )
    )

    assert [user["name"] for user in client.get("/users").json()] == ["Ada"]


def test_sessions_of_one_test_share_its_transaction(
    alchemy_sessionmaker: sessionmaker[Session],
) -> None:
    with alchemy_sessionmaker() as writer:
        writer.add(User(email="ada@example.com", name="Ada"))
        writer.commit()
    with alchemy_sessionmaker() as reader:
        assert reader.scalars(select(User.name)).all() == ["Ada"]


def test_a_failed_request_does_not_end_the_test_transaction(
    client: TestClient, alchemy_session: Session
) -> None:
    alchemy_session.add(User(email="ada@example.com", name="Ada"))
    alchemy_session.commit()
    for _ in range(3):
        response = client.post("/users", json={"email": "ada@example.com", "name": "Again"})
        assert response.status_code == 409

    assert count_users(alchemy_session) == 1


def test_the_test_database_is_the_plugins(alchemy_database: DatabaseInfo) -> None:
    assert alchemy_database.name.startswith("test_")
    assert alchemy_database.backend in ("sqlite", "postgresql")
