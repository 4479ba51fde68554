"""Budget alerts: a webhook POST when a budget's spend crosses one of its thresholds.

Each crossing is *claimed* first — ``SET … NX`` in Redis (or this process's memory) on a key
naming the budget, window, subject, threshold and limit — so among all replicas exactly one
sends it, at most once. The winner delivers on a background thread, retrying with
exponential back-off (``1, 2, 4, …`` s, ``max_attempts`` tries) on a connection error or a
5xx/429 answer; every attempt carries the same ``X-Bastion-Delivery`` id, so a receiver can
drop a repeat. A delivery the winner could not finish before it died is not retried by
another replica (at most once, not at least once).

The URL is checked against the egress policy when the budget is written and again on every
delivery, after DNS resolution, connecting to exactly the address that was checked — for
everyone, admins included: an internal receiver needs ``BASTION_EGRESS_ALLOW_HOSTS``. With a
``secret`` (a ``{{secrets/scope/key}}`` reference) each body is signed:
``X-Bastion-Signature: sha256=<HMAC-SHA256 of the body>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson

from bastion.egress import EgressPolicy

logger = logging.getLogger(__name__)

_STOP = object()


@dataclass(frozen=True)
class Alert:
    url: str
    body: dict[str, Any]
    secret: str | None = None  # the resolved signing key (never logged)


def crossed(before: float, after: float, limit: float, thresholds: tuple[int, ...]) -> list[int]:
    """The thresholds (percent of ``limit``) a spend moving from ``before`` to ``after``
    passed.

    >>> crossed(70.0, 85.0, 100.0, (50, 80, 100))
    [80]
    """
    out = []
    for percent in thresholds:
        point = limit * percent / 100
        if before < point <= after:
            out.append(percent)
    return out


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class AlertSender:
    """Delivers claimed alerts from one daemon thread, in order, with retries."""

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        max_attempts: int = 6,
        backoff_s: float = 1.0,
        timeout_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.policy = policy
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.sleep = sleep
        self.counts: Counter[str] = Counter()  # delivered, failed, retried
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()

    def send(self, alert: Alert) -> None:
        self._idle.clear()
        self._queue.put(alert)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="bastion-alerts", daemon=True)
            self._thread.start()

    def wait_idle(self, timeout_s: float = 30.0) -> bool:
        """Wait until every queued alert was delivered or given up (tests)."""
        return self._idle.wait(timeout_s)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            assert isinstance(item, Alert)
            try:
                self._deliver(item)
            except Exception:
                logger.exception("budget alert delivery failed")
            if self._queue.empty():
                self._idle.set()

    def _deliver(self, alert: Alert) -> None:
        body = orjson.dumps(alert.body)
        headers = {
            "content-type": "application/json",
            "user-agent": "bastion-budgets",
            "x-bastion-delivery": uuid.uuid4().hex,
        }
        if alert.secret is not None:
            headers["x-bastion-signature"] = sign(alert.secret, body)
        where = _safe(alert.url)
        for attempt in range(1, self.max_attempts + 1):
            try:
                status = self._post(alert.url, body, headers)
            except Exception as exc:  # refused by the egress policy, DNS, connect, timeout
                if getattr(exc, "status_code", None) == 403:  # EgressDenied: never retried
                    self.counts["failed"] += 1
                    logger.warning("budget alert to %s refused: %s", where, exc)
                    return
                reason = type(exc).__name__
            else:
                if status < 500 and status != 429:
                    self.counts["delivered" if status < 400 else "failed"] += 1
                    if status >= 400:
                        logger.warning("budget alert to %s answered HTTP %d", where, status)
                    return
                reason = f"HTTP {status}"
            if attempt == self.max_attempts:
                break
            self.counts["retried"] += 1
            delay = self.backoff_s * 2 ** (attempt - 1)
            logger.info("budget alert to %s failed (%s); retry in %.1fs", where, reason, delay)
            self.sleep(delay)
        self.counts["failed"] += 1
        logger.warning("budget alert to %s not delivered after %d tries", where, self.max_attempts)

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = asyncio.run(self.policy.resolve(host, port))[0]
        literal = f"[{address}]" if ":" in address else address
        direct = urlunsplit(parts._replace(netloc=f"{literal}:{port}"))
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        host_header = host if parts.port is None else f"{host}:{parts.port}"
        with httpx.Client(timeout=self.timeout_s, trust_env=False, follow_redirects=False) as c:
            response = c.post(
                direct,
                content=body,
                headers={**headers, "host": host_header},
                extensions=extensions,
            )
        return response.status_code

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=5)
            self._thread = None


def _safe(url: str) -> str:
    """A URL for logs: scheme, host and path, no query (it may hold a token)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", ""))
