"""Fair share of the SQL workers between principals.

A statement needs a *permit* to run on a worker; there are as many permits as workers. A
principal may hold at most ``per_principal`` of them at once. When a permit frees, it goes
to the waiting principal with the fewest running statements (the earliest waiter among
equals), and within a principal to its statements in arrival order. So one user's long
statements take at most ``per_principal`` workers, and another user's ``SELECT 1`` waits only
for the first worker that frees — not behind the first user's queue.

>>> scheduler = FairScheduler(permits=1, per_principal=1)
>>> scheduler.acquire(7, deadline=time.monotonic() + 1)
>>> scheduler.running(7), scheduler.waiting()
(1, 0)
>>> scheduler.release(7)
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from bastion.errors import DeadlineExceeded, StatementCanceled

_POLL_S = 0.05


@dataclass(eq=False)
class _Waiter:
    principal: int
    seq: int
    granted: threading.Event = field(default_factory=threading.Event)


class FairScheduler:
    def __init__(self, permits: int, per_principal: int) -> None:
        if permits < 1 or per_principal < 1:
            raise ValueError("permits and per_principal must be at least 1")
        self._lock = threading.Lock()
        self._free = permits
        self._cap = per_principal
        self._running: Counter[int] = Counter()
        self._queues: dict[int, deque[_Waiter]] = {}
        self._seq = itertools.count()

    def acquire(
        self, principal: int, deadline: float, cancel: threading.Event | None = None
    ) -> None:
        """Wait for a permit; ``DeadlineExceeded`` past ``deadline``, or if ``cancel`` is set
        ``StatementCanceled``."""
        waiter = _Waiter(principal, next(self._seq))
        with self._lock:
            self._queues.setdefault(principal, deque()).append(waiter)
            self._dispatch()
        while not waiter.granted.is_set():
            remaining = deadline - time.monotonic()
            step = remaining if cancel is None else min(remaining, _POLL_S)
            if waiter.granted.wait(max(step, 0.0)):
                break
            cancelled = cancel is not None and cancel.is_set()
            if not cancelled and time.monotonic() < deadline:
                continue
            with self._lock:
                if waiter.granted.is_set():  # granted meanwhile: hand the permit on
                    self._give_back(principal)
                else:
                    self._queues[principal].remove(waiter)
                    if not self._queues[principal]:
                        del self._queues[principal]
                running = self._running[principal]
                self._dispatch()
            if cancelled:
                raise StatementCanceled("The statement was cancelled while waiting to run.")
            raise DeadlineExceeded(
                "The statement timed out waiting for a SQL worker: all workers were busy"
                + (
                    f" and {running} statement(s) of yours were running (at most {self._cap} "
                    "run at once per user)."
                    if running
                    else "."
                )
                + " Retry later, or raise the statement's timeout."
            )

    def release(self, principal: int) -> None:
        with self._lock:
            self._give_back(principal)
            self._dispatch()

    def _give_back(self, principal: int) -> None:
        self._running[principal] -= 1
        if self._running[principal] <= 0:
            del self._running[principal]
        self._free += 1

    def _dispatch(self) -> None:
        """Grant free permits to eligible waiters, fewest running first (lock held)."""
        while self._free > 0:
            eligible = [
                (self._running[p], queue[0].seq, p)
                for p, queue in self._queues.items()
                if self._running[p] < self._cap
            ]
            if not eligible:
                return
            _, _, principal = min(eligible)
            queue = self._queues[principal]
            waiter = queue.popleft()
            if not queue:
                del self._queues[principal]
            self._running[principal] += 1
            self._free -= 1
            waiter.granted.set()

    # -- introspection (tests, status) ----------------------------------------------------

    def running(self, principal: int) -> int:
        with self._lock:
            return self._running.get(principal, 0)

    def waiting(self, principal: int | None = None) -> int:
        with self._lock:
            if principal is not None:
                return len(self._queues.get(principal, ()))
            return sum(len(q) for q in self._queues.values())
