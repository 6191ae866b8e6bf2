"""Console passwords: argon2id hashes (argon2-cffi's RFC 9106 low-memory profile), one-time passwords
and the few rules a new password must meet."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 12
MAX_LENGTH = (
    256  # argon2 takes any length; a cap keeps one login from costing a megabyte of hashing
)

_hasher = PasswordHasher()  # argon2id, t=3, m=64 MiB, p=4: the library's (and RFC 9106's) default
# Verified against when the name is unknown, so a failed login costs the same either way and the
# time taken does not tell which names exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class PasswordRejected(ValueError):
    """The new password breaks a rule; the message says which (never the password)."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; with ``stored_hash=None`` burns the same time and says False."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def one_time_password() -> str:
    """Printed once by ``admin-user add`` and on first start; must be changed at first login."""
    return secrets.token_urlsafe(12)  # 16 characters, 96 bits


def check_new_password(name: str, new: str, *, current: str | None = None) -> None:
    if len(new) < MIN_LENGTH:
        raise PasswordRejected(f"the new password must have at least {MIN_LENGTH} characters")
    if len(new) > MAX_LENGTH:
        raise PasswordRejected(f"the new password must have at most {MAX_LENGTH} characters")
    if new.strip().lower() == name.lower():
        raise PasswordRejected("the new password must not be the user name")
    if current is not None and new == current:
        raise PasswordRejected("the new password must differ from the current one")
