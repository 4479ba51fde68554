"""Login throttling: too many failures for one user name from one address lock it out."""

from __future__ import annotations

import threading

from bastion.clock import Clock
from bastion.errors import RateLimited


class LoginThrottle:
    def __init__(self, clock: Clock, max_failures: int, lockout_s: int) -> None:
        self._clock = clock
        self._max = max_failures
        self._lockout = lockout_s
        self._failures: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()

    def check(self, name: str, address: str) -> None:
        with self._lock:
            recent = self._recent((name, address))
        if len(recent) >= self._max:
            raise RateLimited("Too many failed sign-in attempts; try again in a few minutes.")

    def _recent(self, key: tuple[str, str]) -> list[float]:
        horizon = self._clock.now() - self._lockout
        recent = [t for t in self._failures.get(key, []) if t > horizon]
        if recent:
            self._failures[key] = recent
        else:
            self._failures.pop(key, None)
        return recent

    def failed(self, name: str, address: str) -> None:
        with self._lock:
            self._failures.setdefault((name, address), []).append(self._clock.now())

    def succeeded(self, name: str, address: str) -> None:
        with self._lock:
            self._failures.pop((name, address), None)
