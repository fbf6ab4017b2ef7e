"""Password hashing with argon2id (argon2-cffi's defaults, RFC 9106's low-memory profile).

Kept apart from the account queries so the one hasher, and its parameters, live in one place:
a change of parameters shows up as ``needs_rehash`` at the next login of each user.
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
_dummy_hash: str | None = None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify(password_hash: str, password: str) -> bool:
    """True if ``password`` matches; a corrupt stored hash counts as a mismatch, not a crash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def waste_time(password: str) -> None:
    """Verify against a throwaway hash with the same parameters, so that a login for a name
    that does not exist costs as much as one with a wrong password and timing does not tell
    an attacker which names exist."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash(secrets.token_urlsafe(18))
    verify(_dummy_hash, password)


def generate_password() -> str:
    """A random password for accounts created without one (24 URL-safe characters)."""
    return secrets.token_urlsafe(18)
