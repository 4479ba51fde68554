"""Redis clients with bounded waits, a URL safe to log, and failure counts.

Every command gets a short socket timeout: when Redis is unreachable a request learns it in
well under a second instead of hanging, and :class:`RedisHealth` then keeps callers off Redis
for ``retry_after_s`` (a circuit breaker), so an outage costs each request one check of a
clock, not a connect timeout.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    import redis
    import redis.asyncio

CONNECT_TIMEOUT_S = 0.5
SOCKET_TIMEOUT_S = 0.5


def redacted_url(url: str) -> str:
    """``url`` without its password, for logs and error messages.

    >>> redacted_url("redis://:s3cret@cache.internal:6379/0")
    'redis://:***@cache.internal:6379/0'
    >>> redacted_url("rediss://app:s3cret@cache:6380")
    'rediss://app:***@cache:6380'
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def sync_client(url: str, *, timeout_s: float = SOCKET_TIMEOUT_S) -> redis.Redis:
    """A thread-safe (pooled) client for background threads."""
    import redis

    return redis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=timeout_s,
        health_check_interval=15,
        decode_responses=True,
    )


def async_client(url: str, *, timeout_s: float = SOCKET_TIMEOUT_S) -> redis.asyncio.Redis:
    """A client for one event loop (create it inside the loop that uses it)."""
    import redis.asyncio

    return redis.asyncio.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=timeout_s,
        decode_responses=True,
        max_connections=256,
    )


class RedisHealth:
    """Whether Redis answered lately, and how often it did not, by operation.

    ``failed(op)`` records an error and opens the breaker for ``retry_after_s``; while it is
    open :meth:`available` is False and callers apply their fallback at once. Counts are
    rendered in ``/metrics`` as ``bastion_redis_errors_total{operation=…}`` and
    ``bastion_redis_fallbacks_total{operation=…,outcome=…}``.
    """

    def __init__(self, url: str, *, retry_after_s: float = 1.0) -> None:
        self.url = redacted_url(url)
        self.retry_after_s = retry_after_s
        self.errors: Counter[str] = Counter()
        self.fallbacks: Counter[tuple[str, str]] = Counter()
        self._down_until = 0.0
        self._lock = threading.Lock()

    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def failed(self, operation: str) -> None:
        with self._lock:
            self.errors[operation] += 1
            self._down_until = time.monotonic() + self.retry_after_s

    def fell_back(self, operation: str, outcome: str) -> None:
        """A request went on without Redis: ``outcome`` is what the fallback did
        (``refused``, ``admitted``, ``polling``)."""
        with self._lock:
            self.fallbacks[(operation, outcome)] += 1

    @property
    def up(self) -> bool:
        return self.available()
