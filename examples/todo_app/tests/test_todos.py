"""Todos: create, list, read, update, delete."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from todo_app.models import Project, Todo, User


@pytest.fixture
def ada(alchemy_session: Session) -> User:
    """A user with a project, committed (to a savepoint) before the test runs."""
    user = User(email="ada@example.com", name="Ada")
    alchemy_session.add_all([user, Project(owner=user, name="Engine")])
    alchemy_session.commit()
    return user


def test_create_todo(client: TestClient, alchemy_session: Session, ada: User) -> None:
    project_id = ada.projects[0].id

    response = client.post(
        "/todos", json={"owner_id": ada.id, "title": "Write notes", "project_id": project_id}
    )

    assert response.status_code == 201
    body = response.json()
    assert body["done"] is False
    assert body["project_id"] == project_id
    todo = alchemy_session.get(Todo, body["id"])
    assert todo is not None
    assert todo.title == "Write notes"
    assert todo.owner is ada


def test_create_todo_for_an_unknown_owner_is_404(client: TestClient) -> None:
    response = client.post("/todos", json={"owner_id": 42, "title": "Nobody's"})

    assert response.status_code == 404


def test_todo_cannot_go_into_someone_elses_project(
    client: TestClient, alchemy_session: Session, ada: User
) -> None:
    alan = User(email="alan@example.com", name="Alan")
    alchemy_session.add(alan)
    alchemy_session.commit()

    response = client.post(
        "/todos", json={"owner_id": alan.id, "title": "Sneak in", "project_id": ada.projects[0].id}
    )

    assert response.status_code == 404
    assert alchemy_session.scalars(select(Todo)).all() == []


def test_list_todos_filters(client: TestClient, alchemy_session: Session, ada: User) -> None:
    engine = ada.projects[0]
    alchemy_session.add_all(
        [
            Todo(owner=ada, title="first", done=True),
            Todo(owner=ada, title="second"),
            Todo(owner=ada, title="third", done=True, project=engine),
        ]
    )
    alchemy_session.commit()

    def titles(**params: object) -> list[str]:
        response = client.get("/todos", params=params)
        assert response.status_code == 200
        return [todo["title"] for todo in response.json()]

    assert titles() == ["first", "second", "third"]
    assert titles(done=True) == ["first", "third"]
    assert titles(done=False) == ["second"]
    assert titles(project_id=engine.id) == ["third"]
    assert titles(owner_id=ada.id + 1) == []


def test_read_todo(client: TestClient, alchemy_session: Session, ada: User) -> None:
    todo = Todo(owner=ada, title="Write notes", notes="on Menabrea's paper")
    alchemy_session.add(todo)
    alchemy_session.commit()

    response = client.get(f"/todos/{todo.id}")

    assert response.status_code == 200
    assert response.json()["notes"] == "on Menabrea's paper"
    assert client.get(f"/todos/{todo.id + 1}").status_code == 404


def test_update_todo(client: TestClient, alchemy_session: Session, ada: User) -> None:
    todo = Todo(owner=ada, title="Write notes")
    alchemy_session.add(todo)
    alchemy_session.commit()
    created = todo.updated_at

    response = client.patch(f"/todos/{todo.id}", json={"done": True, "title": "Notes G"})

    assert response.status_code == 200
    assert response.json()["done"] is True
    alchemy_session.refresh(todo)
    assert (todo.title, todo.done) == ("Notes G", True)
    assert todo.updated_at > created
    assert client.patch("/todos/999", json={"done": True}).status_code == 404


def test_delete_todo(client: TestClient, alchemy_session: Session, ada: User) -> None:
    todo = Todo(owner=ada, title="Write notes")
    alchemy_session.add(todo)
    alchemy_session.commit()

    assert client.delete(f"/todos/{todo.id}").status_code == 204
    assert client.delete(f"/todos/{todo.id}").status_code == 404
    assert client.get(f"/todos/{todo.id}").status_code == 404
    assert alchemy_session.scalars(select(Todo)).all() == []
