"""The FastAPI app (``uvicorn shop_app.main:app``)."""

from __future__ import annotations

from fastapi import FastAPI

from shop_app.api.main import api_router
from shop_app.core.config import settings

app = FastAPI(title=settings.PROJECT_NAME, openapi_url=f"{settings.API_V1_STR}/openapi.json")
app.include_router(api_router, prefix=settings.API_V1_STR)
