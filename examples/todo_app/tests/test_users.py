"""Users: the API and the test share one transaction, in both directions."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from todo_app.models import Project, Todo, User


def test_create_user_is_visible_to_the_test_session(
    client: TestClient, alchemy_session: Session
) -> None:
    response = client.post("/users", json={"email": "Ada@Example.com", "name": "Ada"})

    assert response.status_code == 201
    body = response.json()
    assert body["email"] == "ada@example.com"
    user = alchemy_session.get(User, body["id"])
    assert user is not None
    assert user.name == "Ada"


def test_rows_seeded_by_the_test_are_served_by_the_api(
    client: TestClient, alchemy_session: Session
) -> None:
    alchemy_session.add_all(
        [User(email="ada@example.com", name="Ada"), User(email="alan@example.com", name="Alan")]
    )
    alchemy_session.commit()

    response = client.get("/users")

    assert response.status_code == 200
    assert [user["name"] for user in response.json()] == ["Ada", "Alan"]


def test_duplicate_email_is_a_conflict_and_keeps_the_seeded_user(
    client: TestClient, alchemy_session: Session
) -> None:
    alchemy_session.add(User(email="ada@example.com", name="Ada"))
    alchemy_session.commit()

    response = client.post("/users", json={"email": "ada@example.com", "name": "Impostor"})

    # The app rolled its session back after the IntegrityError. That rollback only
    # undid the app's own work: the user this test committed is still there.
    assert response.status_code == 409
    assert "already exists" in response.json()["detail"]
    assert alchemy_session.scalars(select(User.name)).all() == ["Ada"]
    # And the connection is still usable for more requests.
    response = client.post("/users", json={"email": "eve@example.com", "name": "Eve"})
    assert response.status_code == 201
    assert alchemy_session.scalar(select(func.count()).select_from(User)) == 2


def test_unknown_user_is_404(client: TestClient) -> None:
    response = client.get("/users/12345")

    assert response.status_code == 404
    assert response.json() == {"detail": "user 12345 not found"}


def test_invalid_email_is_rejected_before_the_database(client: TestClient) -> None:
    response = client.post("/users", json={"email": "not an email", "name": "X"})

    assert response.status_code == 422


def test_deleting_a_user_deletes_their_projects_and_todos(
    client: TestClient, alchemy_session: Session
) -> None:
    ada = User(email="ada@example.com", name="Ada")
    alan = User(email="alan@example.com", name="Alan")
    engine = Project(owner=ada, name="Analytical Engine")
    alchemy_session.add_all(
        [
            ada,
            alan,
            engine,
            Todo(owner=ada, project=engine, title="Write notes"),
            Todo(owner=alan, title="Break Enigma"),
        ]
    )
    alchemy_session.commit()

    assert client.delete(f"/users/{ada.id}").status_code == 204

    # The app committed in its own session; expire ours to read the database again.
    alchemy_session.expire_all()
    assert alchemy_session.scalars(select(User.name)).all() == ["Alan"]
    assert alchemy_session.scalars(select(Todo.title)).all() == ["Break Enigma"]
    assert alchemy_session.scalar(select(func.count()).select_from(Project)) == 0
