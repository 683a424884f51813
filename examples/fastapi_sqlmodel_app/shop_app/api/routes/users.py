"""Users: list, create, read, update, delete, and a user's items."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, HTTPException, status
from sqlmodel import Session, col, func, select

from shop_app import crud
from shop_app.api.deps import SessionDep
from shop_app.models import (
    Item,
    ItemCreate,
    ItemPublic,
    ItemsPublic,
    Message,
    User,
    UserCreate,
    UserPublic,
    UsersPublic,
    UserUpdate,
)

router = APIRouter(prefix="/users", tags=["users"])


def get_user_or_404(session: Session, user_id: uuid.UUID) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "User not found")
    return user


@router.get("/", response_model=UsersPublic)
def read_users(session: SessionDep, skip: int = 0, limit: int = 100) -> Any:
    count = session.exec(select(func.count()).select_from(User)).one()
    users = session.exec(select(User).order_by(col(User.email)).offset(skip).limit(limit)).all()
    return UsersPublic(data=[UserPublic.model_validate(user) for user in users], count=count)


@router.post("/", response_model=UserPublic, status_code=status.HTTP_201_CREATED)
def create_user(session: SessionDep, user_in: UserCreate) -> Any:
    if crud.get_user_by_email(session=session, email=user_in.email) is not None:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, "The user with this email already exists in the system."
        )
    return crud.create_user(session=session, user_create=user_in)


@router.get("/{user_id}", response_model=UserPublic)
def read_user(session: SessionDep, user_id: uuid.UUID) -> Any:
    return get_user_or_404(session, user_id)


@router.patch("/{user_id}", response_model=UserPublic)
def update_user(session: SessionDep, user_id: uuid.UUID, user_in: UserUpdate) -> Any:
    user = get_user_or_404(session, user_id)
    if user_in.email is not None:
        existing = crud.get_user_by_email(session=session, email=user_in.email)
        if existing is not None and existing.id != user.id:
            raise HTTPException(status.HTTP_409_CONFLICT, "User with this email already exists")
    return crud.update_user(session=session, user=user, user_in=user_in)


@router.delete("/{user_id}", response_model=Message)
def delete_user(session: SessionDep, user_id: uuid.UUID) -> Any:
    user = get_user_or_404(session, user_id)
    if user.is_superuser:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Super users cannot be deleted")
    session.delete(user)
    session.commit()
    return Message(message="User deleted successfully")


@router.get("/{user_id}/items/", response_model=ItemsPublic)
def read_user_items(session: SessionDep, user_id: uuid.UUID) -> Any:
    user = get_user_or_404(session, user_id)
    items = sorted(user.items, key=lambda item: item.title)
    return ItemsPublic(data=[ItemPublic.model_validate(item) for item in items], count=len(items))


@router.post("/{user_id}/items/", response_model=ItemPublic, status_code=status.HTTP_201_CREATED)
def create_user_item(session: SessionDep, user_id: uuid.UUID, item_in: ItemCreate) -> Item:
    user = get_user_or_404(session, user_id)
    if not user.is_active:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Inactive user")
    return crud.create_item(session=session, item_in=item_in, owner_id=user.id)
