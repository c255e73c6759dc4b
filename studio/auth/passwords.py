"""Password hashing with argon2id (argon2-cffi's defaults, RFC 9106's second recommendation)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# One hasher holds only its parameters: immutable configuration, safe to share.
_HASHER = PasswordHasher()


def hash_password(password: str) -> str:
    """The argon2id hash of `password` (salted; encodes its own parameters)."""
    return _HASHER.hash(password)


def verify_password(hashed: str, password: str) -> bool:
    """Whether `password` matches `hashed`; False (never an exception) for a bad hash."""
    try:
        return _HASHER.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(hashed: str) -> bool:
    """Whether `hashed` was made with weaker parameters than today's (rehash at next login)."""
    try:
        return _HASHER.check_needs_rehash(hashed)
    except (InvalidHashError, ValueError):
        return True
