"""The fair scheduler in front of the SQL workers: per-principal caps, fewest-running first,
FIFO within a principal, deadlines and cancellation while waiting."""

from __future__ import annotations

import threading
import time

import pytest

from bastion.errors import DeadlineExceeded, StatementCanceled
from bastion.query.scheduler import FairScheduler

LONG = 60.0


class Waiters:
    """Threads that each wait for a permit; records the order in which they got one."""

    def __init__(self, scheduler: FairScheduler) -> None:
        self.scheduler = scheduler
        self.order: list[str] = []
        self.errors: dict[str, BaseException] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self, name: str, principal: int, timeout: float = LONG) -> None:
        queued = self.scheduler.waiting(principal)

        def run() -> None:
            try:
                self.scheduler.acquire(principal, time.monotonic() + timeout)
            except BaseException as error:
                self.errors[name] = error
                return
            with self._lock:
                self.order.append(name)

        thread = threading.Thread(target=run, daemon=True)
        self._threads.append(thread)
        thread.start()
        # Wait until it is queued or granted, so that arrival order is what we started.
        deadline = time.monotonic() + LONG
        while (
            self.scheduler.waiting(principal) == queued
            and name not in self.order
            and name not in self.errors
        ):
            assert time.monotonic() < deadline
            time.sleep(0.005)

    def granted(self, count: int) -> list[str]:
        deadline = time.monotonic() + LONG
        while len(self.order) < count:
            assert time.monotonic() < deadline, f"only {self.order} were granted"
            time.sleep(0.005)
        return list(self.order)

    def join(self) -> None:
        for thread in self._threads:
            thread.join(LONG)


def test_a_principal_runs_at_most_its_cap_and_others_go_first() -> None:
    scheduler = FairScheduler(permits=3, per_principal=2)
    waiters = Waiters(scheduler)
    for i in range(4):  # A fills its cap; its other two wait although a permit is free
        waiters.start(f"a{i}", principal=1)
    assert waiters.granted(2) == ["a0", "a1"]
    assert scheduler.running(1) == 2 and scheduler.waiting(1) == 2
    waiters.start("b0", principal=2)  # B takes the free permit at once
    assert waiters.granted(3) == ["a0", "a1", "b0"]
    waiters.start("c0", principal=3)  # all permits busy: C queues behind A's two
    scheduler.release(1)  # A (1 running after this) vs C (0 running): C goes first
    assert waiters.granted(4)[-1] == "c0"
    scheduler.release(2)  # B's permit: A's oldest waiter, FIFO within A
    assert waiters.granted(5)[-1] == "a2"
    scheduler.release(3)  # a free permit, but A is at its cap again: a3 keeps waiting
    assert scheduler.running(1) == 2 and scheduler.waiting(1) == 1
    scheduler.release(1)
    assert waiters.granted(6)[-1] == "a3"
    waiters.join()
    assert not waiters.errors


def test_the_earliest_waiter_wins_among_principals_running_as_many() -> None:
    scheduler = FairScheduler(permits=1, per_principal=1)
    scheduler.acquire(9, time.monotonic() + LONG)
    waiters = Waiters(scheduler)
    waiters.start("x", principal=1)
    waiters.start("y", principal=2)
    waiters.start("z", principal=3)
    for expected in ("x", "y", "z"):
        scheduler.release(9 if expected == "x" else {"y": 1, "z": 2}[expected])
        assert waiters.granted(len(waiters.order) + 1)[-1] == expected
    waiters.join()


def test_waiting_past_the_deadline_fails_and_frees_the_place() -> None:
    scheduler = FairScheduler(permits=1, per_principal=1)
    scheduler.acquire(1, time.monotonic() + LONG)
    with pytest.raises(DeadlineExceeded, match="waiting for a SQL worker"):
        scheduler.acquire(2, time.monotonic() + 0.1)
    assert scheduler.waiting() == 0
    with pytest.raises(DeadlineExceeded, match="of yours were running"):
        scheduler.acquire(1, time.monotonic() + 0.1)
    scheduler.release(1)
    scheduler.acquire(2, time.monotonic() + LONG)
    assert scheduler.running(2) == 1 and scheduler.running(1) == 0


def test_cancelling_a_waiting_statement() -> None:
    scheduler = FairScheduler(permits=1, per_principal=1)
    scheduler.acquire(1, time.monotonic() + LONG)
    cancel = threading.Event()
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            scheduler.acquire(2, time.monotonic() + LONG, cancel)
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    deadline = time.monotonic() + LONG
    while scheduler.waiting(2) == 0:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    cancel.set()
    thread.join(LONG)
    assert len(outcome) == 1 and isinstance(outcome[0], StatementCanceled)
    assert scheduler.waiting() == 0
    scheduler.release(1)
    assert scheduler.running(1) == 0
