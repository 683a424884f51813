"""Items: list, read, update, delete."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, HTTPException, status
from sqlmodel import Session, col, func, select

from shop_app.api.deps import SessionDep
from shop_app.models import Item, ItemPublic, ItemsPublic, ItemUpdate, Message

router = APIRouter(prefix="/items", tags=["items"])


def get_item_or_404(session: Session, item_id: uuid.UUID) -> Item:
    item = session.get(Item, item_id)
    if item is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Item not found")
    return item


@router.get("/", response_model=ItemsPublic)
def read_items(session: SessionDep, skip: int = 0, limit: int = 100) -> Any:
    count = session.exec(select(func.count()).select_from(Item)).one()
    items = session.exec(select(Item).order_by(col(Item.title)).offset(skip).limit(limit)).all()
    return ItemsPublic(data=[ItemPublic.model_validate(item) for item in items], count=count)


@router.get("/{item_id}", response_model=ItemPublic)
def read_item(session: SessionDep, item_id: uuid.UUID) -> Any:
    return get_item_or_404(session, item_id)


@router.patch("/{item_id}", response_model=ItemPublic)
def update_item(session: SessionDep, item_id: uuid.UUID, item_in: ItemUpdate) -> Any:
    item = get_item_or_404(session, item_id)
    item.sqlmodel_update(item_in.model_dump(exclude_unset=True))
    session.add(item)
    session.commit()
    session.refresh(item)
    return item


@router.delete("/{item_id}", response_model=Message)
def delete_item(session: SessionDep, item_id: uuid.UUID) -> Any:
    session.delete(get_item_or_404(session, item_id))
    session.commit()
    return Message(message="Item deleted successfully")
