"""Password hashing (argon2), random token generation and token hashing."""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

PAT_PREFIX = "bstp_"
REFRESH_PREFIX = "bstr_"
SECRET_PREFIX = "bsts_"

_hasher = PasswordHasher()
# A real hash of a random string: verifying against it costs what a real check costs, so the
# response time of a login does not tell whether the user exists.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_token(prefix: str) -> str:
    """A random credential: 160 bits of entropy behind a recognisable prefix."""
    return prefix + secrets.token_hex(20)


def hash_token(token: str) -> str:
    """Tokens are random, so a fast unsalted hash is safe and keeps validation in microseconds."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_id() -> str:
    return secrets.token_hex(16)
