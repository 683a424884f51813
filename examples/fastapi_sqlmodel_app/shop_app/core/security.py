"""Password hashing (PBKDF2 from the standard library)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from .config import settings


def get_password_hash(password: str) -> str:
    salt = secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), salt.encode(), settings.PASSWORD_ITERATIONS
    )
    return f"pbkdf2_sha256${settings.PASSWORD_ITERATIONS}${salt}${digest.hex()}"


def verify_password(password: str, hashed: str) -> bool:
    _, iterations, salt, expected = hashed.split("$")
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(iterations))
    return hmac.compare_digest(digest.hex(), expected)
