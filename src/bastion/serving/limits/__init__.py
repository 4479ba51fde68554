"""AI Gateway rate limits: parse an endpoint's ``rate_limits`` and admit requests under them.

Pure and in-memory: the gateway parses the list once with :func:`parse_rate_limits`, calls
:meth:`RateLimiter.admit` before forwarding a request (an endpoint without limits parses to None
and is admitted at no cost), and :meth:`Admission.charge` with the tokens the answer used.
"""

from __future__ import annotations

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

__all__ = [
    "IDLE_EVICTION_S",
    "MAX_GROUP_LIMITS",
    "MAX_LIMITS",
    "Admission",
    "Quota",
    "RateLimit",
    "RateLimitExceeded",
    "RateLimitKey",
    "RateLimiter",
    "RateLimits",
    "parse_rate_limits",
]
