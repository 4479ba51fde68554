"""Admit or refuse requests under an endpoint's rate limits.

Each quota (``calls`` or ``tokens`` of a limit) is a token bucket that holds at most its
per-minute amount and refills smoothly at amount/60 per second. A request needs one call from
each calls bucket that applies and at least one token in each tokens bucket; the tokens it used
are charged after the answer (:meth:`Admission.charge`), so a tokens bucket can go below zero
and then refuses until it has refilled. A quota of 0 refuses everything.

Which limits apply follows Databricks:

1. The ``endpoint`` limit caps all callers together.
2. Then exactly one of: the caller's own limit (a ``user`` or ``service_principal`` limit naming
   it); else the limits of the caller's groups, each bucket shared by the group's members, where
   the caller is refused only when every one of its limited groups is exhausted and the first
   group (in configuration order) with room is charged; else the default ``user`` limit, or for
   a service principal the default ``service_principal`` limit if there is one.

The limiter keeps counters in memory, for one process, keyed by endpoint and quota: writing an
endpoint's configuration again with the same limits keeps its counters. Buckets that have been
full for two minutes are dropped (a new one starts full, so nothing changes), in a sweep at most
once a minute. It takes no locks: it is meant for the gateway's one event loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from bastion.errors import RateLimited
from bastion.identity.model import Caller, PrincipalKind
from bastion.serving.limits.policy import Quota, RateLimit, RateLimitKey, RateLimits

IDLE_EVICTION_S = 120.0
SWEEP_INTERVAL_S = 60.0
_ONE = 1.0 - 1e-9  # a bucket admits when it holds one unit (less float rounding)

# A bucket: (endpoint, quota meter, subject); the subject tells apart the per-principal buckets
# of a default limit and is "" for a bucket shared by everyone the limit covers.
_BucketKey = tuple[str, str, int | str]


class RateLimitExceeded(RateLimited):
    """HTTP 429: a rate limit refused the request; ``retry_after_s`` says when to try again."""

    def __init__(self, message: str, *, retry_after_s: int, limit: RateLimit) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.limit = limit


class _Bucket:
    __slots__ = ("capacity", "level", "rate", "stamp")

    def __init__(self, capacity: int, now: float) -> None:
        self.capacity = float(capacity)
        self.rate = capacity / 60.0
        self.level = self.capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        if now > self.stamp:
            if self.level < self.capacity:
                self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait_s(self) -> float:
        """Seconds until the bucket holds one unit again (inf for a quota of 0)."""
        if self.level >= _ONE:
            return 0.0
        return math.inf if self.rate == 0 else (1.0 - self.level) / self.rate

    def idle_s(self, now: float) -> float:
        """For how long the bucket has been full at ``now`` (negative while it is not)."""
        if self.rate == 0:
            return now - self.stamp
        return now - (self.stamp + (self.capacity - self.level) / self.rate)


@dataclass(slots=True)
class _Meter:
    key: _BucketKey
    bucket: _Bucket
    quota: Quota


@dataclass(frozen=True, slots=True)
class _Refusal:
    wait_s: float
    message: str
    limit: RateLimit


class Admission:
    """A request admitted under rate limits; charge it the tokens it used once answered."""

    __slots__ = ("_buckets", "_clock", "_meters")

    def __init__(
        self,
        meters: tuple[_Meter, ...],
        buckets: dict[_BucketKey, _Bucket],
        clock: Callable[[], float],
    ) -> None:
        self._meters = meters
        self._buckets = buckets
        self._clock = clock

    def charge(self, tokens: int) -> None:
        """Record ``tokens`` (prompt plus completion) against every tokens quota that applied."""
        if tokens <= 0 or not self._meters:
            return
        now = self._clock()
        for meter in self._meters:
            # A long request can outlive its bucket (dropped while full); charge the live one.
            bucket = self._buckets.setdefault(meter.key, meter.bucket)
            bucket.refill(now)
            bucket.level -= tokens


_UNLIMITED = Admission((), {}, time.monotonic)


class RateLimiter:
    """Counters for every endpoint's rate limits, in this process.

    ``clock`` returns seconds on a monotonic scale; tests pass a fake one.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[_BucketKey, _Bucket] = {}
        self._next_sweep = clock() + SWEEP_INTERVAL_S

    @property
    def bucket_count(self) -> int:
        """How many buckets are held (they are dropped once idle)."""
        return len(self._buckets)

    def admit(self, scope: str, limits: RateLimits | None, caller: Caller) -> Admission:
        """Admit one request by ``caller`` to endpoint ``scope``, or raise RateLimitExceeded.

        Nothing is counted for a refused request.
        """
        if limits is None:
            return _UNLIMITED
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        meters: list[_Meter] = []
        refusals: list[_Refusal] = []
        if limits.endpoint is not None:
            self._apply(scope, limits.endpoint, "", caller, now, meters, refusals)
        own = _own_limit(limits, caller)
        if own is not None:
            self._apply(scope, own, "", caller, now, meters, refusals)
        elif not self._apply_groups(scope, limits, caller, now, meters, refusals):
            default = _default_limit(limits, caller)
            if default is not None:
                self._apply(scope, default, caller.principal_id, caller, now, meters, refusals)
        if refusals:
            raise _exceeded(refusals)
        tokens: list[_Meter] = []
        for meter in meters:
            if meter.quota.dimension == "calls":
                meter.bucket.level -= 1.0
            else:
                tokens.append(meter)
        return Admission(tuple(tokens), self._buckets, self._clock)

    async def acquire(self, scope: str, limits: RateLimits | None, caller: Caller) -> Admission:
        """:meth:`admit`, awaitable like the shared limiter's (``redis_limiter``)."""
        return self.admit(scope, limits, caller)

    def _apply(
        self,
        scope: str,
        limit: RateLimit,
        subject: int | str,
        caller: Caller,
        now: float,
        meters: list[_Meter],
        refusals: list[_Refusal],
    ) -> None:
        limit_meters = self._meters(scope, limit, subject, now)
        refusal = _refusal(scope, limit, caller, limit_meters)
        if refusal is not None:
            refusals.append(refusal)
        meters.extend(limit_meters)

    def _apply_groups(
        self,
        scope: str,
        limits: RateLimits,
        caller: Caller,
        now: float,
        meters: list[_Meter],
        refusals: list[_Refusal],
    ) -> bool:
        """Apply the caller's group limits; False when none of its groups is limited."""
        exhausted: list[_Refusal] = []
        for limit in limits.groups:
            if limit.principal not in caller.groups:
                continue
            group_meters = self._meters(scope, limit, "", now)
            refusal = _refusal(scope, limit, caller, group_meters)
            if refusal is None:
                meters.extend(group_meters)
                return True
            exhausted.append(refusal)
        if not exhausted:
            return False
        refusals.append(_groups_refusal(scope, caller, exhausted))
        return True

    def _meters(
        self, scope: str, limit: RateLimit, subject: int | str, now: float
    ) -> tuple[_Meter, ...]:
        found: list[_Meter] = []
        for quota in limit.quotas:
            key = (scope, quota.meter, subject)
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(quota.per_minute, now)
            else:
                bucket.refill(now)
            found.append(_Meter(key, bucket, quota))
        return tuple(found)

    def _sweep(self, now: float) -> None:
        idle = [
            key for key, bucket in self._buckets.items() if bucket.idle_s(now) >= IDLE_EVICTION_S
        ]
        for key in idle:
            del self._buckets[key]
        self._next_sweep = now + SWEEP_INTERVAL_S


def _groups_refusal(scope: str, caller: Caller, exhausted: list[_Refusal]) -> _Refusal:
    """Every limited group of the caller is used up: refused until the first has room."""
    if len(exhausted) == 1:
        return exhausted[0]
    soonest = min(exhausted, key=lambda refusal: refusal.wait_s)
    groups = ", ".join(f"'{refusal.limit.principal}'" for refusal in exhausted)
    message = (
        f"Rate limit exceeded for {_kind(caller)} '{caller.name}' on endpoint "
        f"'{scope}': the limits of all its groups ({groups}) are used up"
    )
    return _Refusal(soonest.wait_s, message, soonest.limit)


def _exceeded(refusals: list[_Refusal]) -> RateLimitExceeded:
    """The error for a refused request: the refusal that lasts longest decides."""
    worst = max(refusals, key=lambda refusal: refusal.wait_s)
    if math.isinf(worst.wait_s):
        return RateLimitExceeded(
            f"{worst.message}; a limit of 0 admits no requests.",
            retry_after_s=60,
            limit=worst.limit,
        )
    retry_after_s = max(1, math.ceil(worst.wait_s))
    return RateLimitExceeded(
        f"{worst.message}. Retry after {retry_after_s} s.",
        retry_after_s=retry_after_s,
        limit=worst.limit,
    )


def _own_limit(limits: RateLimits, caller: Caller) -> RateLimit | None:
    if caller.kind is PrincipalKind.SERVICE_PRINCIPAL:
        return limits.service_principals.get(caller.name)
    if not limits.users:
        return None
    return limits.users.get(caller.name.casefold())


def _default_limit(limits: RateLimits, caller: Caller) -> RateLimit | None:
    if caller.kind is PrincipalKind.SERVICE_PRINCIPAL and limits.service_principal_default:
        return limits.service_principal_default
    return limits.user_default


def _refusal(
    scope: str, limit: RateLimit, caller: Caller, meters: tuple[_Meter, ...]
) -> _Refusal | None:
    for meter in meters:
        if meter.bucket.level < _ONE:
            break
    else:
        return None
    slowest = max(meters, key=lambda meter: meter.bucket.wait_s())
    wait_s = slowest.bucket.wait_s()
    return _Refusal(wait_s, _message(scope, limit, caller, slowest.quota), limit)


def _message(scope: str, limit: RateLimit, caller: Caller, quota: Quota) -> str:
    if limit.key is RateLimitKey.ENDPOINT:
        return f"Rate limit exceeded on endpoint '{scope}': {quota} for all callers together"
    if limit.key is RateLimitKey.USER_GROUP:
        return (
            f"Rate limit exceeded for group '{limit.principal}' on endpoint '{scope}': "
            f"{quota}, shared by the group's members"
        )
    message = (
        f"Rate limit exceeded for {_kind(caller)} '{caller.name}' on endpoint '{scope}': {quota}"
    )
    if limit.is_default:
        message += f" (the default for each {limit.key.value.replace('_', ' ')})"
    return message


def _kind(caller: Caller) -> str:
    return "service principal" if caller.kind is PrincipalKind.SERVICE_PRINCIPAL else "user"
