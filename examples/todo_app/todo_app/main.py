"""The HTTP API: users, their projects, and todos.

Run it with ``python -m todo_app.db`` (creates the tables) and then
``uvicorn todo_app.main:app``.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Response, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .db import get_db
from .models import Project, Todo, User
from .schemas import (
    ProjectCreate,
    ProjectRead,
    TodoCreate,
    TodoRead,
    TodoUpdate,
    UserCreate,
    UserRead,
)

app = FastAPI(title="Todo API")

DB = Annotated[Session, Depends(get_db)]
Row = TypeVar("Row", User, Project, Todo)


def commit_or_conflict(db: Session, detail: str) -> None:
    """Commit, turning a unique-constraint violation into 409 Conflict."""
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, detail) from None


def get_or_404(db: Session, model: type[Row], id_: int) -> Row:
    row = db.get(model, id_)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{model.__name__.lower()} {id_} not found")
    return row


def check_project(db: Session, project_id: int | None, owner_id: int) -> None:
    """A todo may only go into a project of its own owner."""
    if project_id is None:
        return
    project = db.get(Project, project_id)
    if project is None or project.owner_id != owner_id:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"project {project_id} not found for user {owner_id}"
        )


# -- users ----------------------------------------------------------------------


@app.post("/users", response_model=UserRead, status_code=status.HTTP_201_CREATED)
def create_user(body: UserCreate, db: DB) -> User:
    user = User(email=body.email.lower(), name=body.name)
    db.add(user)
    commit_or_conflict(db, f"a user with email {user.email} already exists")
    return user


@app.get("/users", response_model=list[UserRead])
def list_users(db: DB) -> list[User]:
    return list(db.scalars(select(User).order_by(User.id)))


@app.get("/users/{user_id}", response_model=UserRead)
def read_user(user_id: int, db: DB) -> User:
    return get_or_404(db, User, user_id)


@app.delete("/users/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_user(user_id: int, db: DB) -> Response:
    db.delete(get_or_404(db, User, user_id))
    db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- projects -------------------------------------------------------------------


@app.post(
    "/users/{user_id}/projects", response_model=ProjectRead, status_code=status.HTTP_201_CREATED
)
def create_project(user_id: int, body: ProjectCreate, db: DB) -> Project:
    user = get_or_404(db, User, user_id)
    project = Project(owner=user, name=body.name)
    db.add(project)
    commit_or_conflict(db, f"user {user_id} already has a project named {body.name!r}")
    return project


@app.get("/users/{user_id}/projects", response_model=list[ProjectRead])
def list_projects(user_id: int, db: DB) -> list[Project]:
    get_or_404(db, User, user_id)
    query = select(Project).where(Project.owner_id == user_id).order_by(Project.name)
    return list(db.scalars(query))


# -- todos ----------------------------------------------------------------------


@app.post("/todos", response_model=TodoRead, status_code=status.HTTP_201_CREATED)
def create_todo(body: TodoCreate, db: DB) -> Todo:
    get_or_404(db, User, body.owner_id)
    check_project(db, body.project_id, body.owner_id)
    todo = Todo(**body.model_dump())
    db.add(todo)
    db.commit()
    return todo


@app.get("/todos", response_model=list[TodoRead])
def list_todos(
    db: DB,
    owner_id: int | None = None,
    project_id: int | None = None,
    done: bool | None = None,
) -> list[Todo]:
    query = select(Todo).order_by(Todo.id)
    if owner_id is not None:
        query = query.where(Todo.owner_id == owner_id)
    if project_id is not None:
        query = query.where(Todo.project_id == project_id)
    if done is not None:
        query = query.where(Todo.done == done)
    return list(db.scalars(query))


@app.get("/todos/{todo_id}", response_model=TodoRead)
def read_todo(todo_id: int, db: DB) -> Todo:
    return get_or_404(db, Todo, todo_id)


@app.patch("/todos/{todo_id}", response_model=TodoRead)
def update_todo(todo_id: int, body: TodoUpdate, db: DB) -> Todo:
    todo = get_or_404(db, Todo, todo_id)
    changes = body.model_dump(exclude_unset=True)
    if "project_id" in changes:
        check_project(db, changes["project_id"], todo.owner_id)
    for field, value in changes.items():
        setattr(todo, field, value)
    db.commit()
    return todo


@app.delete("/todos/{todo_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_todo(todo_id: int, db: DB) -> Response:
    db.delete(get_or_404(db, Todo, todo_id))
    db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
