"""Shared rate limits on a real Redis: the in-process limiter's rules, unchanged, and what
happens when Redis is unreachable.

The precedence tests of ``test_rate_limits.py`` run again here against
:class:`RedisRateLimiter` (with the tests' manual clock passed to the Lua script), so the two
limiters cannot drift apart.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import test_rate_limits as rules

from bastion.bus import RedisHealth
from bastion.errors import Unavailable
from bastion.serving.limits import RateLimitExceeded, RedisRateLimiter, parse_rate_limits
from services import RedisServer

_ids = itertools.count(10_000)


class SyncRedisLimiter:
    """The in-process limiter's synchronous API over :class:`RedisRateLimiter`."""

    def __init__(self, url: str, clock: Callable[[], float]) -> None:
        self.loop = asyncio.new_event_loop()
        self.limiter = RedisRateLimiter(url, clock=clock, prefix=f"t{uuid.uuid4().hex[:8]}")

    def admit(self, scope: str, limits: Any, who: Any) -> Any:
        admission = self.loop.run_until_complete(self.limiter.acquire(scope, limits, who))
        loop, limiter = self.loop, self.limiter

        class Charged:
            def charge(self, tokens: int) -> None:
                async def charge() -> None:
                    admission.charge(tokens)
                    await limiter.drain()

                loop.run_until_complete(charge())

        return Charged()

    def close(self) -> None:
        self.loop.run_until_complete(self.limiter.aclose())
        self.loop.close()


SHARED_RULES = [
    "test_calls_refill_smoothly_over_the_minute",
    "test_a_custom_user_limit_names_the_user_without_default_note",
    "test_tokens_are_charged_after_the_answer_and_then_block",
    "test_the_stricter_of_calls_and_tokens_wins",
    "test_a_limit_of_zero_blocks",
    "test_endpoint_limit_caps_everyone_together",
    "test_a_refused_request_counts_against_nothing",
    "test_custom_limit_overrides_group_and_default",
    "test_group_limit_overrides_the_default_and_is_shared",
    "test_a_member_of_several_groups_is_refused_only_when_all_are_used_up",
    "test_service_principals_use_their_own_default_else_the_user_default",
    "test_custom_service_principal_limit_matches_its_name",
    "test_default_buckets_are_per_principal",
    "test_counters_are_per_endpoint_and_survive_an_unchanged_config",
    "test_charge_after_the_bucket_was_dropped_still_counts",
]


@pytest.fixture
def on_redis(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    made: list[SyncRedisLimiter] = []

    def factory(clock: Callable[[], float]) -> SyncRedisLimiter:
        limiter = SyncRedisLimiter(redis_url, clock)
        made.append(limiter)
        return limiter

    monkeypatch.setattr(rules, "RateLimiter", factory)
    yield
    for limiter in made:
        limiter.close()


@pytest.mark.parametrize("name", SHARED_RULES)
def test_the_same_rules_hold_on_redis(name: str, on_redis: None) -> None:
    getattr(rules, name)()


def test_two_limiters_on_one_redis_enforce_one_limit_jointly(redis_url: str) -> None:
    """Two replicas' limiters (Redis's own clock): 5 calls a minute admits 5, not 10."""
    limits = parse_rate_limits([{"key": "user", "renewal_period": "minute", "calls": 5}])
    ann = rules.caller("ann")

    async def run() -> tuple[int, int]:
        a = RedisRateLimiter(redis_url, prefix="joint")
        b = RedisRateLimiter(redis_url, prefix="joint")
        admitted = refused = 0
        for limiter in itertools.islice(itertools.cycle([a, b]), 12):
            try:
                await limiter.acquire("e", limits, ann)
                admitted += 1
            except RateLimitExceeded:
                refused += 1
        await a.aclose()
        await b.aclose()
        return admitted, refused

    assert asyncio.run(run()) == (5, 7)


def test_unreachable_redis_refuses_or_admits_as_configured_and_is_counted(
    redis_service: RedisServer,
) -> None:
    limits = parse_rate_limits([{"key": "user", "renewal_period": "minute", "calls": 1}])
    ann = rules.caller("ann")

    async def run() -> None:
        health = RedisHealth(redis_service.url)
        refusing = RedisRateLimiter(redis_service.url, health=health, prefix="down")
        admitting = RedisRateLimiter(
            redis_service.url, health=health, unavailable="admit", prefix="down"
        )
        await refusing.acquire("e", limits, ann)  # Redis is up: counted
        redis_service.pause()
        try:
            with pytest.raises(Unavailable) as caught:
                await refusing.acquire("e", limits, ann)
            assert caught.value.status_code == 503
            assert "Redis" in caught.value.message and "test-redis-secret" not in str(caught.value)
            assert getattr(caught.value, "retry_after_s", None) == 1
            # The breaker is open now: the next ones do not wait for a timeout.
            for _ in range(3):
                await admitting.acquire("e", limits, ann)  # admitted uncounted
        finally:
            redis_service.resume()
        assert health.errors["rate_limit"] == 1
        assert health.fallbacks[("rate_limit", "refused")] == 1
        assert health.fallbacks[("rate_limit", "admitted")] == 3
        assert "test-redis-secret" not in health.url
        await refusing.aclose()
        await admitting.aclose()

    asyncio.run(run())
