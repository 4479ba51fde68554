"""AI Gateway rate limits: parse an endpoint's ``rate_limits`` and admit requests under them.

The gateway parses the list once with :func:`parse_rate_limits`, awaits ``limiter.acquire``
before forwarding a request (an endpoint without limits parses to None and is admitted at no
cost), and calls ``charge`` on the admission with the tokens the answer used. The limiter is
:class:`RateLimiter` (in memory, one process) or, with ``BASTION_REDIS_URL``,
:class:`RedisRateLimiter` (buckets in Redis, shared by every replica) — see
:func:`limiter_for`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from bastion.serving.limits.limiter import (
    IDLE_EVICTION_S,
    Admission,
    RateLimiter,
    RateLimitExceeded,
)
from bastion.serving.limits.policy import (
    MAX_GROUP_LIMITS,
    MAX_LIMITS,
    Quota,
    RateLimit,
    RateLimitKey,
    RateLimits,
    parse_rate_limits,
)
from bastion.serving.limits.redis_limiter import RedisAdmission, RedisRateLimiter

if TYPE_CHECKING:
    from bastion.identity.model import Caller
    from bastion.platform import Platform


class Charge(Protocol):
    def charge(self, tokens: int) -> None: ...


class Limiter(Protocol):
    """What the gateway needs of a limiter."""

    async def acquire(self, scope: str, limits: RateLimits | None, caller: Caller) -> Charge: ...


def limiter_for(platform: Platform) -> Limiter:
    """The shared limiter when the platform has Redis, else this process's own."""
    settings = platform.settings
    if settings.redis is None:
        return RateLimiter()
    return RedisRateLimiter(
        settings.redis, health=platform.redis_health, unavailable=settings.redis_unavailable
    )


__all__ = [
    "IDLE_EVICTION_S",
    "MAX_GROUP_LIMITS",
    "MAX_LIMITS",
    "Admission",
    "Charge",
    "Limiter",
    "Quota",
    "RateLimit",
    "RateLimitExceeded",
    "RateLimitKey",
    "RateLimiter",
    "RateLimits",
    "RedisAdmission",
    "RedisRateLimiter",
    "limiter_for",
    "parse_rate_limits",
]
