"""The app's settings, read from the environment once, when the app is imported.

``DATABASE_URL`` names the database; without it the app uses ``./shop.db``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class Settings:
    PROJECT_NAME: str = field(default_factory=lambda: env("PROJECT_NAME", "Shop"))
    API_V1_STR: str = "/api/v1"
    DATABASE_URL: str = field(default_factory=lambda: env("DATABASE_URL", "sqlite:///./shop.db"))
    FIRST_SUPERUSER: str = field(
        default_factory=lambda: env("FIRST_SUPERUSER", "admin@example.com")
    )
    FIRST_SUPERUSER_PASSWORD: str = field(
        default_factory=lambda: env("FIRST_SUPERUSER_PASSWORD", "changethis")
    )
    PASSWORD_ITERATIONS: int = field(
        default_factory=lambda: int(env("PASSWORD_ITERATIONS", "100000"))
    )


settings = Settings()
