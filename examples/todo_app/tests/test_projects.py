"""Projects: a unique (owner, name) pair, enforced by the database."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from todo_app.models import Project, User


def test_project_names_are_unique_per_owner(client: TestClient, alchemy_session: Session) -> None:
    ada = User(email="ada@example.com", name="Ada")
    alan = User(email="alan@example.com", name="Alan")
    alchemy_session.add_all([ada, alan, Project(owner=ada, name="Engine")])
    alchemy_session.commit()

    duplicate = client.post(f"/users/{ada.id}/projects", json={"name": "Engine"})
    same_name_other_owner = client.post(f"/users/{alan.id}/projects", json={"name": "Engine"})

    assert duplicate.status_code == 409
    assert same_name_other_owner.status_code == 201
    owners = alchemy_session.scalars(select(Project.owner_id).order_by(Project.owner_id)).all()
    assert owners == [ada.id, alan.id]


def test_projects_are_listed_by_name(client: TestClient, alchemy_session: Session) -> None:
    ada = User(email="ada@example.com", name="Ada")
    alchemy_session.add(ada)
    alchemy_session.commit()
    for name in ("Notes", "Engine", "Bernoulli"):
        assert client.post(f"/users/{ada.id}/projects", json={"name": name}).status_code == 201

    response = client.get(f"/users/{ada.id}/projects")

    assert [project["name"] for project in response.json()] == ["Bernoulli", "Engine", "Notes"]


def test_projects_of_an_unknown_user_are_404(client: TestClient) -> None:
    assert client.get("/users/999/projects").status_code == 404
    assert client.post("/users/999/projects", json={"name": "Engine"}).status_code == 404
