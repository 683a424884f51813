"""Password hashes (PBKDF2-SHA256 from the standard library) and login tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from .settings import PASSWORD_ITERATIONS, TOKEN_BYTES


def hash_password(password: str) -> str:
    """``pbkdf2_sha256$<iterations>$<salt>$<hash>``, salted anew for every call."""
    salt = secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), PASSWORD_ITERATIONS)
    return f"pbkdf2_sha256${PASSWORD_ITERATIONS}${salt}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches the stored hash (in constant time)."""
    try:
        algorithm, iterations, salt, expected = stored.split("$")
    except ValueError:
        return False
    if algorithm != "pbkdf2_sha256":
        return False
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(iterations))
    return hmac.compare_digest(digest.hex(), expected)


def new_token() -> str:
    """A random, URL-safe login token."""
    return secrets.token_urlsafe(TOKEN_BYTES)
