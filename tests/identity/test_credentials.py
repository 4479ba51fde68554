from __future__ import annotations

import pytest

from bastion.clock import ManualClock
from bastion.errors import RateLimited, Unauthenticated
from bastion.identity.credentials import (
    PAT_PREFIX,
    hash_password,
    hash_token,
    new_token,
    verify_password,
)
from bastion.identity.jwt_codec import JwtCodec, load_or_create_key
from bastion.identity.throttle import LoginThrottle


def test_passwords_are_argon2_hashed_and_verified() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("$argon2")
    assert "correct horse" not in stored
    assert verify_password(stored, "correct horse")
    assert not verify_password(stored, "wrong")
    assert not verify_password(None, "anything")


def test_tokens_are_random_and_hashed() -> None:
    a, b = new_token(PAT_PREFIX), new_token(PAT_PREFIX)
    assert a != b and a.startswith(PAT_PREFIX) and len(a) == len(PAT_PREFIX) + 40
    assert hash_token(a) == hash_token(a) != hash_token(b)
    assert a not in hash_token(a)


def test_signing_key_is_created_private_and_reused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "secret.key"
    key = load_or_create_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_key(path) == key


def test_jwt_round_trip_expiry_and_tampering(tmp_path) -> None:  # type: ignore[no-untyped-def]
    clock = ManualClock()
    codec = JwtCodec(b"k" * 32, clock)
    token, expires = codec.issue(7, ("sql",), ttl_s=60)
    claims = codec.decode(token)
    assert (claims.principal_id, claims.scopes, claims.expires_at) == (7, ("sql",), expires)
    all_token, _ = codec.issue(7, None, ttl_s=60)
    assert codec.decode(all_token).scopes is None
    with pytest.raises(Unauthenticated):
        JwtCodec(b"x" * 32, clock).decode(token)
    with pytest.raises(Unauthenticated):
        codec.decode(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
    clock.advance(61)
    with pytest.raises(Unauthenticated, match="expired"):
        codec.decode(token)


def test_login_throttle_locks_out_then_recovers() -> None:
    clock = ManualClock()
    throttle = LoginThrottle(clock, max_failures=3, lockout_s=60)
    for _ in range(3):
        throttle.check("ann", "1.2.3.4")
        throttle.failed("ann", "1.2.3.4")
    with pytest.raises(RateLimited):
        throttle.check("ann", "1.2.3.4")
    throttle.check("ann", "5.6.7.8")  # another address is not locked
    clock.advance(61)
    throttle.check("ann", "1.2.3.4")
