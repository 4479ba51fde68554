"""Spend counters: one per (endpoint, budget, window, subject), in Redis or in this process.

A counter holds three numbers:

* ``spent`` — what requests added since the counter was created (one atomic increment per
  request, after its answer; never a metastore write);
* ``since`` — the start time (ms) of the first request it counted;
* ``base`` — what the usage table (``system.serving.endpoint_usage``) holds for the same
  subject from the window's start until ``since``, filled in once, shortly after the counter
  is created (:mod:`.usage`). So a budget added mid-month, or counters lost with a Redis
  restart, still see the month's earlier spend.

The spend of a subject is ``base + spent``. In Redis a counter is a hash under
``bastion:bg:{<endpoint>}:<budget>:<unit>:<window>:<subject>`` (the endpoint in braces keeps
an endpoint's keys in one Redis Cluster slot), with a set of the window's subjects beside it;
both expire a day after the window ends.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from bastion.bus.connection import async_client, sync_client

if TYPE_CHECKING:
    import redis
    import redis.asyncio


@dataclass(frozen=True)
class CounterKey:
    endpoint: str
    budget: str
    unit: str
    window: str
    subject: str

    @property
    def family(self) -> str:
        """The window's counters of one budget (all subjects)."""
        return f"bastion:bg:{{{self.endpoint}}}:{self.budget}:{self.unit}:{self.window}"

    @property
    def redis_key(self) -> str:
        return f"{self.family}:{self.subject}"


@dataclass(frozen=True)
class Spend:
    spent: float = 0.0
    base: float | None = None
    since_ms: int | None = None

    @property
    def total(self) -> float:
        return self.spent + (self.base or 0.0)

    @property
    def baseline_pending(self) -> bool:
        """Counted requests exist, but the usage before them is not added in yet."""
        return self.since_ms is not None and self.base is None


class SpendStore(Protocol):
    """Where counters live. The async methods run on the gateway's event loop."""

    async def totals(self, keys: list[CounterKey]) -> list[Spend]: ...

    async def add(
        self, keys: list[CounterKey], amounts: list[float], since_ms: int, ttl_s: list[int]
    ) -> list[Spend]: ...

    def read(self, keys: list[CounterKey]) -> list[Spend]: ...

    def subjects(self, family: CounterKey) -> list[str]: ...

    def set_base(self, key: CounterKey, base: float) -> Spend | None: ...

    def claim(self, token: str, ttl_s: int) -> bool: ...


class MemorySpendStore:
    """Counters of this process only (no ``BASTION_REDIS_URL``)."""

    def __init__(self) -> None:
        self._counters: dict[CounterKey, dict[str, float]] = {}
        self._expiry: dict[CounterKey, float] = {}
        self._claims: dict[str, float] = {}
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        for key in [k for k, at in self._expiry.items() if at <= now]:
            self._counters.pop(key, None)
            self._expiry.pop(key, None)
        for token in [t for t, at in self._claims.items() if at <= now]:
            self._claims.pop(token, None)

    @staticmethod
    def _spend(entry: dict[str, float] | None) -> Spend:
        if entry is None:
            return Spend()
        since = entry.get("since")
        return Spend(entry.get("s", 0.0), entry.get("b"), int(since) if since else None)

    async def totals(self, keys: list[CounterKey]) -> list[Spend]:
        return self.read(keys)

    async def add(
        self, keys: list[CounterKey], amounts: list[float], since_ms: int, ttl_s: list[int]
    ) -> list[Spend]:
        now = time.monotonic()
        out = []
        with self._lock:
            self._expire(now)
            for key, amount, ttl in zip(keys, amounts, ttl_s, strict=True):
                entry = self._counters.setdefault(key, {"s": 0.0, "since": float(since_ms)})
                entry["s"] += amount
                self._expiry[key] = now + ttl
                out.append(self._spend(entry))
        return out

    def read(self, keys: list[CounterKey]) -> list[Spend]:
        with self._lock:
            self._expire(time.monotonic())
            return [self._spend(self._counters.get(key)) for key in keys]

    def subjects(self, family: CounterKey) -> list[str]:
        with self._lock:
            return sorted(key.subject for key in self._counters if key.family == family.family)

    def set_base(self, key: CounterKey, base: float) -> Spend | None:
        with self._lock:
            entry = self._counters.get(key)
            if entry is None or "b" in entry:
                return None
            entry["b"] = base
            return self._spend(entry)

    def claim(self, token: str, ttl_s: int) -> bool:
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            if token in self._claims:
                return False
            self._claims[token] = now + ttl_s
            return True


# KEYS: (counter, subjects set) per counter. ARGV: since (ms), then (amount, ttl ms, subject)
# per counter. Returns (spent, base or '', since or '') per counter.
_ADD = """
local out = {}
local n = #KEYS / 2
for i = 1, n do
  local counter = KEYS[2 * i - 1]
  local family = KEYS[2 * i]
  local at = 1 + 3 * (i - 1)
  local spent = redis.call('HINCRBYFLOAT', counter, 's', ARGV[at + 1])
  redis.call('HSETNX', counter, 'since', ARGV[1])
  redis.call('PEXPIRE', counter, ARGV[at + 2])
  redis.call('SADD', family, ARGV[at + 3])
  redis.call('PEXPIRE', family, ARGV[at + 2])
  local v = redis.call('HMGET', counter, 'b', 'since')
  out[#out + 1] = spent
  out[#out + 1] = v[1] or ''
  out[#out + 1] = v[2] or ''
end
return out
"""

# KEYS: the counter. ARGV: base. Sets it once; returns (spent, base, since) if it was set here.
_SET_BASE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if redis.call('HSETNX', KEYS[1], 'b', ARGV[1]) == 0 then return false end
local v = redis.call('HMGET', KEYS[1], 's', 'b', 'since')
return {v[1] or '0', v[2] or '', v[3] or ''}
"""


def _spend(values: list[Any] | tuple[Any, ...]) -> Spend:
    spent, base, since = values
    return Spend(
        float(spent or 0.0),
        float(base) if base not in (None, "") else None,
        int(float(since)) if since not in (None, "") else None,
    )


class RedisSpendStore:
    """Counters in Redis, shared by every replica."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._sync: redis.Redis = sync_client(url)
        self._set_base = self._sync.register_script(_SET_BASE)
        self._async: redis.asyncio.Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._add: Any = None

    def _client(self) -> redis.asyncio.Redis:
        loop = asyncio.get_running_loop()
        if self._async is None or self._loop is not loop:
            self._async = async_client(self.url)
            self._loop = loop
            self._add = self._async.register_script(_ADD)
        return self._async

    async def totals(self, keys: list[CounterKey]) -> list[Spend]:
        client = self._client()
        async with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key.redis_key, "s", "b", "since")
            results = await pipe.execute()
        return [_spend(values) for values in results]

    async def add(
        self, keys: list[CounterKey], amounts: list[float], since_ms: int, ttl_s: list[int]
    ) -> list[Spend]:
        self._client()
        redis_keys: list[str] = []
        args: list[str] = [str(since_ms)]
        for key, amount, ttl in zip(keys, amounts, ttl_s, strict=True):
            redis_keys += [key.redis_key, key.family]
            args += [repr(amount), str(ttl * 1000), key.subject]
        flat = await self._add(keys=redis_keys, args=args)
        return [_spend(flat[i : i + 3]) for i in range(0, len(flat), 3)]

    def read(self, keys: list[CounterKey]) -> list[Spend]:
        with self._sync.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key.redis_key, "s", "b", "since")
            return [_spend(values) for values in pipe.execute()]

    def subjects(self, family: CounterKey) -> list[str]:
        return sorted(str(s) for s in self._sync.smembers(family.family))

    def set_base(self, key: CounterKey, base: float) -> Spend | None:
        result = self._set_base(keys=[key.redis_key], args=[repr(base)])
        return _spend(result) if result else None

    def claim(self, token: str, ttl_s: int) -> bool:
        return bool(self._sync.set(token, "1", nx=True, ex=ttl_s))

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.aclose()
            self._async = None
