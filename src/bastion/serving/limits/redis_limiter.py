"""Rate limits shared by every process and replica: the same buckets, kept in Redis.

Each quota's token bucket is a Redis hash (``l`` = level, ``t`` = when it was last refilled,
in Redis's own clock) under ``bastion:rl:{<endpoint>}:<meter>:<subject>`` — the endpoint in
braces keeps an endpoint's buckets in one Redis Cluster slot. One Lua script
(:data:`ADMIT`) reads, refills, decides and charges every bucket that applies to a request
atomically, so N replicas enforce one limit jointly, never N times, with the precedence of
:mod:`.limiter` (endpoint limit; then the caller's own limit, else its groups — refused only
when every limited group is used up, the first with room charged — else the default).
Tokens are charged after the answer by a second script (:data:`CHARGE`), off the request's
path. A bucket that has refilled expires from Redis on its own (``PEXPIRE``).

When Redis cannot be reached (a short timeout, then a 1 s circuit breaker) a request to an
endpoint with limits is refused with 503 (``BASTION_REDIS_UNAVAILABLE=refuse``, the default)
or admitted uncounted (``admit``); either way it is counted in ``/metrics``
(``bastion_redis_errors_total``, ``bastion_redis_fallbacks_total``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from bastion.bus import RedisHealth
from bastion.bus.connection import async_client
from bastion.errors import Unavailable
from bastion.identity.model import Caller
from bastion.serving.limits.limiter import (
    _ONE,
    _Bucket,
    _default_limit,
    _exceeded,
    _groups_refusal,
    _Meter,
    _own_limit,
    _Refusal,
    _refusal,
)
from bastion.serving.limits.policy import RateLimit, RateLimits

if TYPE_CHECKING:
    import redis.asyncio

logger = logging.getLogger(__name__)

# KEYS: every bucket. ARGV: now ('' = Redis TIME), the number of sections, then (kind, bucket
# count) per section — kind 'r' must have room, 'g' is a group alternative — then
# (capacity, 'c' | 't') per bucket. Returns {admitted, chosen group section, levels...}.
ADMIT = """
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local ONE = tonumber(ARGV[2])
local nsec = tonumber(ARGV[3])
local pos = 4
local kinds, firsts, counts = {}, {}, {}
local total = 0
for s = 1, nsec do
  kinds[s] = ARGV[pos]
  counts[s] = tonumber(ARGV[pos + 1])
  firsts[s] = total + 1
  total = total + counts[s]
  pos = pos + 2
end
local cap, dim, level, stamp = {}, {}, {}, {}
for i = 1, total do
  cap[i] = tonumber(ARGV[pos])
  dim[i] = ARGV[pos + 1]
  pos = pos + 2
  local v = redis.call('HMGET', KEYS[i], 'l', 't')
  local l = tonumber(v[1])
  local t = tonumber(v[2])
  if l == nil or t == nil then
    l = cap[i]
    t = now
  end
  if now > t then
    if l < cap[i] then l = math.min(cap[i], l + (now - t) * cap[i] / 60.0) end
    t = now
  end
  level[i] = l
  stamp[i] = t
end
local function room(s)
  for i = firsts[s], firsts[s] + counts[s] - 1 do
    if level[i] < ONE then return false end
  end
  return true
end
local admitted = 1
local chosen = 0
local grouped = false
for s = 1, nsec do
  if kinds[s] == 'r' then
    if not room(s) then admitted = 0 end
  elseif chosen == 0 then
    grouped = true
    if room(s) then chosen = s end
  end
end
if grouped and chosen == 0 then admitted = 0 end
if admitted == 1 then
  for s = 1, nsec do
    if kinds[s] == 'r' or s == chosen then
      for i = firsts[s], firsts[s] + counts[s] - 1 do
        if dim[i] == 'c' then level[i] = level[i] - 1 end
      end
    end
  end
end
local out = {admitted, chosen}
for i = 1, total do
  local rate = cap[i] / 60.0
  local ttl = 120000
  if rate > 0 then ttl = math.max(1000, math.ceil(((cap[i] - level[i]) / rate + 60) * 1000)) end
  redis.call('HSET', KEYS[i], 'l', tostring(level[i]), 't', tostring(stamp[i]))
  redis.call('PEXPIRE', KEYS[i], ttl)
  out[#out + 1] = tostring(level[i])
end
return out
"""

# KEYS: the tokens buckets that admitted a request. ARGV: now ('' = TIME), tokens, then each
# bucket's capacity. Refills, then subtracts the tokens (a bucket may go below zero).
CHARGE = """
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local tokens = tonumber(ARGV[2])
for i = 1, #KEYS do
  local c = tonumber(ARGV[2 + i])
  local v = redis.call('HMGET', KEYS[i], 'l', 't')
  local l = tonumber(v[1])
  local t = tonumber(v[2])
  if l == nil or t == nil then
    l = c
    t = now
  end
  if now > t then
    if l < c then l = math.min(c, l + (now - t) * c / 60.0) end
    t = now
  end
  l = l - tokens
  local rate = c / 60.0
  local ttl = 120000
  if rate > 0 then ttl = math.max(1000, math.ceil(((c - l) / rate + 60) * 1000)) end
  redis.call('HSET', KEYS[i], 'l', tostring(l), 't', tostring(t))
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return #KEYS
"""


class _Section:
    """One limit that applies: 'r' (must have room) or 'g' (one of the caller's groups)."""

    __slots__ = ("kind", "limit", "meters", "subject")

    def __init__(self, kind: str, limit: RateLimit, subject: int | str) -> None:
        self.kind = kind
        self.limit = limit
        self.subject = subject
        self.meters: tuple[_Meter, ...] = ()


class RedisAdmission:
    """A request admitted under shared limits; :meth:`charge` sends its tokens to Redis in
    the background (the response is not held up by it)."""

    __slots__ = ("_buckets", "_limiter")

    def __init__(self, limiter: RedisRateLimiter | None, buckets: list[tuple[str, int]]) -> None:
        self._limiter = limiter
        self._buckets = buckets

    def charge(self, tokens: int) -> None:
        if tokens <= 0 or not self._buckets or self._limiter is None:
            return
        self._limiter.charge_later(self._buckets, tokens)


_UNLIMITED = RedisAdmission(None, [])


class RedisRateLimiter:
    """:class:`~bastion.serving.limits.RateLimiter`'s rules on buckets in Redis.

    ``clock`` (seconds) replaces Redis's ``TIME`` — for tests only: replicas must share one
    clock, which Redis's is.
    """

    def __init__(
        self,
        url: str,
        *,
        health: RedisHealth | None = None,
        unavailable: Literal["refuse", "admit"] = "refuse",
        prefix: str = "bastion:rl",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.url = url
        self.health = health or RedisHealth(url)
        self.unavailable = unavailable
        self.prefix = prefix
        self.clock = clock
        self._client: redis.asyncio.Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._admit: Any = None
        self._charge: Any = None
        self._tasks: set[asyncio.Task[None]] = set()

    def _connected(self) -> tuple[Any, Any]:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = async_client(self.url)
            self._loop = loop
            self._admit = self._client.register_script(ADMIT)
            self._charge = self._client.register_script(CHARGE)
        return self._admit, self._charge

    def _now(self) -> str:
        return repr(self.clock()) if self.clock is not None else ""

    def _key(self, scope: str, meter: str, subject: int | str) -> str:
        return f"{self.prefix}:{{{scope}}}:{meter}:{subject}"

    async def acquire(
        self, scope: str, limits: RateLimits | None, caller: Caller
    ) -> RedisAdmission:
        """Admit one request by ``caller`` to endpoint ``scope`` or raise RateLimitExceeded
        (429); raises Unavailable (503) when Redis is unreachable and the policy refuses."""
        if limits is None:
            return _UNLIMITED
        sections = _sections(limits, caller)
        if not sections:
            return _UNLIMITED
        keys: list[str] = []
        args: list[str] = [self._now(), repr(_ONE), str(len(sections))]
        for section in sections:
            args += [section.kind, str(len(section.limit.quotas))]
        for section in sections:
            for quota in section.limit.quotas:
                keys.append(self._key(scope, quota.meter, section.subject))
                args += [str(quota.per_minute), "c" if quota.dimension == "calls" else "t"]
        if not self.health.available():
            return self._fallback(scope)
        try:
            admit, _ = self._connected()
            result = await admit(keys=keys, args=args)
        except Exception as exc:  # redis errors, timeouts, a closed loop's connection
            self.health.failed("rate_limit")
            logger.warning(
                "rate limits of %s not checked: Redis at %s failed (%s)",
                scope,
                self.health.url,
                type(exc).__name__,
            )
            return self._fallback(scope)
        admitted, chosen = int(result[0]), int(result[1])
        levels = [float(level) for level in result[2:]]
        index = 0
        for section in sections:
            meters = []
            for quota in section.limit.quotas:
                bucket = _Bucket(quota.per_minute, 0.0)
                bucket.level = levels[index]
                index += 1
                meters.append(_Meter((scope, quota.meter, section.subject), bucket, quota))
            section.meters = tuple(meters)
        if admitted:
            charged = [
                (self._key(scope, meter.quota.meter, section.subject), meter.quota.per_minute)
                for number, section in enumerate(sections, 1)
                if section.kind == "r" or number == chosen
                for meter in section.meters
                if meter.quota.dimension == "tokens"
            ]
            return RedisAdmission(self, charged)
        raise _exceeded(_refusals(scope, caller, sections))

    def _fallback(self, scope: str) -> RedisAdmission:
        if self.unavailable == "admit":
            self.health.fell_back("rate_limit", "admitted")
            return _UNLIMITED
        self.health.fell_back("rate_limit", "refused")
        error = Unavailable(
            f"The rate limits of endpoint '{scope}' cannot be checked now: the shared counter "
            "store (Redis) is unreachable. Try again shortly."
        )
        error.retry_after_s = 1  # type: ignore[attr-defined]  # read by the gateway
        raise error

    def charge_later(self, buckets: list[tuple[str, int]], tokens: int) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._charge_now(buckets, tokens))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _charge_now(self, buckets: list[tuple[str, int]], tokens: int) -> None:
        if not self.health.available():
            self.health.fell_back("rate_limit_charge", "uncounted")
            return
        try:
            _, charge = self._connected()
            await charge(
                keys=[key for key, _ in buckets],
                args=[self._now(), str(tokens), *(str(capacity) for _, capacity in buckets)],
            )
        except Exception as exc:
            self.health.failed("rate_limit_charge")
            self.health.fell_back("rate_limit_charge", "uncounted")
            logger.warning("tokens not charged: Redis failed (%s)", type(exc).__name__)

    async def drain(self) -> None:
        """Wait for the charges still being sent (tests; shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        await self.drain()
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _sections(limits: RateLimits, caller: Caller) -> list[_Section]:
    """The limits that apply to ``caller``, in the order :mod:`.limiter` applies them."""
    sections: list[_Section] = []
    if limits.endpoint is not None:
        sections.append(_Section("r", limits.endpoint, ""))
    own = _own_limit(limits, caller)
    if own is not None:
        sections.append(_Section("r", own, ""))
        return sections
    groups = [limit for limit in limits.groups if limit.principal in caller.groups]
    if groups:
        sections += [_Section("g", limit, "") for limit in groups]
        return sections
    default = _default_limit(limits, caller)
    if default is not None:
        sections.append(_Section("r", default, caller.principal_id))
    return sections


def _refusals(scope: str, caller: Caller, sections: list[_Section]) -> list[_Refusal]:
    refusals: list[_Refusal] = []
    exhausted: list[_Refusal] = []
    for section in sections:
        refusal = _refusal(scope, section.limit, caller, section.meters)
        if section.kind == "r":
            if refusal is not None:
                refusals.append(refusal)
        elif refusal is not None:
            exhausted.append(refusal)
        else:  # a group with room: the request was refused by another limit
            exhausted = []
            break
    if exhausted:
        refusals.append(_groups_refusal(scope, caller, exhausted))
    return refusals
