"""AI Gateway rate limits: parsing as Databricks does, and admitting under its precedence."""

from __future__ import annotations

import doctest
import itertools
from typing import Any

import pytest

from bastion.clock import ManualClock
from bastion.errors import InvalidRequest, RateLimited
from bastion.identity.model import Caller, PrincipalKind
from bastion.serving import limits as limits_package
from bastion.serving.limits import (
    IDLE_EVICTION_S,
    RateLimit,
    RateLimiter,
    RateLimitExceeded,
    RateLimitKey,
    RateLimits,
    parse_rate_limits,
    policy,
)

_ids = itertools.count(1)


def caller(
    name: str,
    *groups: str,
    kind: PrincipalKind = PrincipalKind.USER,
) -> Caller:
    return Caller(
        principal_id=next(_ids),
        kind=kind,
        name=name,
        display_name=name,
        groups=frozenset(groups),
        group_ids=frozenset(),
    )


def limit(key: str = "endpoint", **fields: Any) -> dict[str, Any]:
    return {"key": key, "renewal_period": "minute", **fields}


def parsed(*items: dict[str, Any]) -> RateLimits:
    result = parse_rate_limits(list(items))
    assert result is not None
    return result


def admit_times(
    limiter: RateLimiter, scope: str, limits: RateLimits, who: Caller, times: int
) -> None:
    for _ in range(times):
        limiter.admit(scope, limits, who)


def refused(limiter: RateLimiter, scope: str, limits: RateLimits, who: Caller) -> bool:
    try:
        limiter.admit(scope, limits, who)
    except RateLimitExceeded:
        return True
    return False


def test_docstring_examples_run() -> None:
    result = doctest.testmod(policy, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0


# --- parsing -----------------------------------------------------------------------------------


def test_parse_the_databricks_example() -> None:
    limits = parsed(
        limit("endpoint", calls=1000),
        limit("user", calls=60, tokens=100000),
        limit("user_group", principal="data-scientists", tokens=500000),
        limit("service_principal", principal="app-1", calls=10),
    )
    assert limits.endpoint == RateLimit(RateLimitKey.ENDPOINT, calls=1000)
    assert limits.user_default == RateLimit(RateLimitKey.USER, calls=60, tokens=100000)
    assert limits.groups == (
        RateLimit(RateLimitKey.USER_GROUP, principal="data-scientists", tokens=500000),
    )
    assert dict(limits.service_principals) == {
        "app-1": RateLimit(RateLimitKey.SERVICE_PRINCIPAL, principal="app-1", calls=10)
    }
    assert [str(quota) for quota in limits.user_default.quotas] == [
        "60 calls per minute",
        "100000 tokens per minute",
    ]


def test_key_defaults_to_endpoint_and_empty_lists_mean_no_limits() -> None:
    assert parsed({"renewal_period": "minute", "calls": 5}).endpoint == RateLimit(calls=5)
    assert parse_rate_limits(None) is None
    assert parse_rate_limits([]) is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"key": "user"}, "must be a list of limits"),
        (["x"], "ai_gateway.rate_limits[0] must be an object"),
        ([limit(calls=1, period="minute")], "unknown key 'period'"),
        ([limit("users", calls=1)], "key must be one of 'endpoint', 'user', 'user_group'"),
        ([{"key": "user", "calls": 1}], "renewal_period is required; set it to 'minute'"),
        ([limit(calls=1, renewal_period="hour")], "must be 'minute'"),
        ([limit("user")], "limits nothing; give 'calls'"),
        ([limit(calls=-1)], "calls must be a whole number, 0 or more"),
        ([limit(tokens=1.5)], "tokens must be a whole number"),
        ([limit(calls=True)], "calls must be a whole number"),
        ([limit(calls="60")], "calls must be a whole number"),
        ([limit(principal="alice", calls=1)], "takes no principal; remove 'principal'"),
        ([limit("user_group", calls=1)], "user_group limit without 'principal'"),
        ([limit("user", principal=" ", calls=1)], "principal must be a non-empty string"),
        ([limit("user", principal=7, calls=1)], "principal must be a non-empty string"),
        ([limit(calls=1)] * 21, "has 21 limits; an endpoint allows at most 20"),
        (
            [limit("user_group", principal=f"g{n}", calls=1) for n in range(6)],
            "has 6 user_group limits; an endpoint allows at most 5",
        ),
        (
            [
                limit("user", principal="Ann@x.io", calls=1),
                limit("user", principal="ann@x.io", tokens=9),
            ],
            "rate_limits[1] repeats ai_gateway.rate_limits[0] (key 'user' with principal",
        ),
        ([limit("user", calls=1), limit("user", tokens=1)], "repeats"),
        ([limit(calls=1), limit(tokens=1)], "repeats"),
    ],
)
def test_parse_errors_say_what_to_fix(raw: Any, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_rate_limits(raw)
    assert message in caught.value.message


def test_twenty_limits_and_five_groups_are_allowed() -> None:
    items = [limit("user_group", principal=f"g{n}", calls=1) for n in range(5)]
    items += [limit("user", principal=f"u{n}", calls=1) for n in range(15)]
    assert len(parsed(*items).limits) == 20


# --- admitting ---------------------------------------------------------------------------------


def test_no_limits_admit_everyone_without_counting() -> None:
    limiter = RateLimiter(clock=ManualClock().now)
    for _ in range(1000):
        limiter.admit("e", None, caller("alice")).charge(10**9)
    assert limiter.bucket_count == 0


def test_calls_refill_smoothly_over_the_minute() -> None:
    clock = ManualClock()
    limiter = RateLimiter(clock=clock.now)
    limits = parsed(limit("user", calls=60))
    alice = caller("alice@x")
    admit_times(limiter, "e", limits, alice, 60)
    with pytest.raises(RateLimitExceeded) as caught:
        limiter.admit("e", limits, alice)
    assert caught.value.message == (
        "Rate limit exceeded for user 'alice@x' on endpoint 'e': 60 calls per minute "
        "(the default for each user). Retry after 1 s."
    )
    assert caught.value.retry_after_s == 1
    assert isinstance(caught.value, RateLimited) and caught.value.status_code == 429
    clock.advance(0.5)
    assert refused(limiter, "e", limits, alice)
    clock.advance(0.5)
    limiter.admit("e", limits, alice)
    assert refused(limiter, "e", limits, alice)
    clock.advance(10)
    admit_times(limiter, "e", limits, alice, 10)
    assert refused(limiter, "e", limits, alice)


def test_a_custom_user_limit_names_the_user_without_default_note() -> None:
    limiter = RateLimiter(clock=ManualClock().now)
    limits = parsed(limit("user", principal="Alice@X", calls=2), limit("user", calls=100))
    alice = caller("alice@x")
    admit_times(limiter, "e", limits, alice, 2)
    with pytest.raises(RateLimitExceeded) as caught:
        limiter.admit("e", limits, alice)
    assert caught.value.message == (
        "Rate limit exceeded for user 'alice@x' on endpoint 'e': 2 calls per minute. "
        "Retry after 30 s."
    )
    assert caught.value.retry_after_s == 30
    assert caught.value.limit == RateLimit(RateLimitKey.USER, principal="Alice@X", calls=2)


def test_tokens_are_charged_after_the_answer_and_then_block() -> None:
    clock = ManualClock()
    limiter = RateLimiter(clock=clock.now)
    limits = parsed(limit("user", tokens=600))
    alice = caller("alice")
    admission = limiter.admit("e", limits, alice)
    limiter.admit("e", limits, alice).charge(0)  # a bucket with room admits any request
    admission.charge(900)  # more than the whole minute: the bucket goes 300 into debt
    with pytest.raises(RateLimitExceeded) as caught:
        limiter.admit("e", limits, alice)
    assert "600 tokens per minute" in caught.value.message
    assert caught.value.retry_after_s == 31  # (300 + 1) tokens at 10 tokens per second
    clock.advance(30)
    assert refused(limiter, "e", limits, alice)
    clock.advance(1)
    limiter.admit("e", limits, alice)


def test_the_stricter_of_calls_and_tokens_wins() -> None:
    clock = ManualClock()
    limiter = RateLimiter(clock=clock.now)
    limits = parsed(limit("user", calls=100, tokens=1000))
    bob = caller("bob")
    limiter.admit("e", limits, bob).charge(5000)
    with pytest.raises(RateLimitExceeded) as caught:
        limiter.admit("e", limits, bob)
    assert "1000 tokens per minute" in caught.value.message
    clock.advance(300)
    admit_times(limiter, "e", limits, bob, 100)
    with pytest.raises(RateLimitExceeded) as caught:
        limiter.admit("e", limits, bob)
    assert "100 calls per minute" in caught.value.message


def test_a_limit_of_zero_blocks() -> None:
    limiter = RateLimiter(clock=ManualClock().now)
    limits = parsed(limit("user", principal="mallory", calls=0), limit("user", calls=10))
    with pytest.raises(RateLimitExceeded) as caught:
        limiter.admit("e", limits, caller("mallory"))
    assert caught.value.message == (
        "Rate limit exceeded for user 'mallory' on endpoint 'e': 0 calls per minute; "
        "a limit of 0 admits no requests."
    )
    assert caught.value.retry_after_s == 60
    limiter.admit("e", limits, caller("someone-else"))


def test_endpoint_limit_caps_everyone_together() -> None:
    clock = ManualClock()
    limiter = RateLimiter(clock=clock.now)
    limits = parsed(
        limit("endpoint", calls=3),
        limit("user", principal="vip", calls=1000),
        limit("user", calls=1000),
    )
    limiter.admit("e", limits, caller("vip"))
    limiter.admit("e", limits, caller("ann"))
    limiter.admit("e", limits, caller("bob"))
    with pytest.raises(RateLimitExceeded) as caught:
        limiter.admit("e", limits, caller("vip"))
    assert caught.value.message == (
        "Rate limit exceeded on endpoint 'e': 3 calls per minute for all callers together. "
        "Retry after 20 s."
    )
    assert refused(limiter, "e", limits, caller("carol"))


def test_a_refused_request_counts_against_nothing() -> None:
    limiter = RateLimiter(clock=ManualClock().now)
    limits = parsed(limit("endpoint", calls=5), limit("user", calls=1))
    ann = caller("ann")
    limiter.admit("e", limits, ann)
    for _ in range(10):
        assert refused(limiter, "e", limits, ann)  # refused by her own limit ...
    admit_times(limiter, "e", limits, caller("bob"), 1)
    admit_times(limiter, "e", limits, caller("carol"), 1)
    admit_times(limiter, "e", limits, caller("dan"), 1)
    admit_times(limiter, "e", limits, caller("eve"), 1)  # ... so the endpoint still had room


def test_custom_limit_overrides_group_and_default() -> None:
    limiter = RateLimiter(clock=ManualClock().now)
    limits = parsed(
        limit("user", principal="ann", calls=5),
        limit("user_group", principal="ds", calls=1),
        limit("user", calls=1),
    )
    ann = caller("ann", "ds")
    admit_times(limiter, "e", limits, ann, 5)
    assert refused(limiter, "e", limits, ann)
    # Ann's requests did not use the group's shared bucket.
    limiter.admit("e", limits, caller("bob", "ds"))


def test_group_limit_overrides_the_default_and_is_shared() -> None:
    limiter = RateLimiter(clock=ManualClock().now)
    limits = parsed(limit("user_group", principal="ds", calls=3), limit("user", calls=1))
    ann, bob = caller("ann", "ds"), caller("bob", "ds")
    admit_times(limiter, "e", limits, ann, 2)  # more than the default of 1
    limiter.admit("e", limits, bob)
    with pytest.raises(RateLimitExceeded) as caught:
        limiter.admit("e", limits, bob)
    assert caught.value.message == (
        "Rate limit exceeded for group 'ds' on endpoint 'e': 3 calls per minute, shared by "
        "the group's members. Retry after 20 s."
    )
    assert refused(limiter, "e", limits, ann)
    # Callers outside any limited group get the default.
    carol = caller("carol", "other")
    limiter.admit("e", limits, carol)
    assert refused(limiter, "e", limits, carol)


def test_a_member_of_several_groups_is_refused_only_when_all_are_used_up() -> None:
    clock = ManualClock()
    limiter = RateLimiter(clock=clock.now)
    limits = parsed(
        limit("user_group", principal="a", calls=2),
        limit("user_group", principal="b", calls=1),
    )
    ann = caller("ann", "a", "b")
    admit_times(limiter, "e", limits, ann, 3)  # two from group a, then one from group b
    with pytest.raises(RateLimitExceeded) as caught:
        limiter.admit("e", limits, ann)
    assert caught.value.message == (
        "Rate limit exceeded for user 'ann' on endpoint 'e': the limits of all its groups "
        "('a', 'b') are used up. Retry after 30 s."
    )
    # The charges went to the group that admitted: b is used up for its only member too.
    assert refused(limiter, "e", limits, caller("bob", "b"))
    assert refused(limiter, "e", limits, caller("cid", "a"))
    clock.advance(30)  # group a has one call again; b needs 60 s
    limiter.admit("e", limits, ann)
    assert refused(limiter, "e", limits, ann)


def test_service_principals_use_their_own_default_else_the_user_default() -> None:
    limiter = RateLimiter(clock=ManualClock().now)
    sp = caller("app-1", kind=PrincipalKind.SERVICE_PRINCIPAL)
    with_sp_default = parsed(limit("service_principal", calls=2), limit("user", calls=1))
    admit_times(limiter, "e1", with_sp_default, sp, 2)
    with pytest.raises(RateLimitExceeded) as caught:
        limiter.admit("e1", with_sp_default, sp)
    assert caught.value.message == (
        "Rate limit exceeded for service principal 'app-1' on endpoint 'e1': 2 calls per "
        "minute (the default for each service principal). Retry after 30 s."
    )
    user_default_only = parsed(limit("user", calls=1))
    limiter.admit("e2", user_default_only, sp)
    assert refused(limiter, "e2", user_default_only, sp)


def test_custom_service_principal_limit_matches_its_name() -> None:
    limiter = RateLimiter(clock=ManualClock().now)
    limits = parsed(limit("service_principal", principal="app-1", calls=3), limit("user", calls=1))
    sp = caller("app-1", kind=PrincipalKind.SERVICE_PRINCIPAL)
    admit_times(limiter, "e", limits, sp, 3)
    assert refused(limiter, "e", limits, sp)
    # A user that happens to have the same name gets the user default.
    same_name = caller("app-1")
    limiter.admit("e", limits, same_name)
    assert refused(limiter, "e", limits, same_name)


def test_default_buckets_are_per_principal() -> None:
    limiter = RateLimiter(clock=ManualClock().now)
    limits = parsed(limit("user", calls=1))
    ann, bob = caller("ann"), caller("bob")
    limiter.admit("e", limits, ann)
    limiter.admit("e", limits, bob)
    assert refused(limiter, "e", limits, ann)
    assert refused(limiter, "e", limits, bob)


def test_counters_are_per_endpoint_and_survive_an_unchanged_config() -> None:
    limiter = RateLimiter(clock=ManualClock().now)
    ann = caller("ann")
    limiter.admit("e1", parsed(limit("user", calls=1)), ann)
    assert refused(limiter, "e1", parsed(limit("user", calls=1)), ann)  # re-parsed, same limit
    limiter.admit("e2", parsed(limit("user", calls=1)), ann)  # another endpoint
    limiter.admit("e1", parsed(limit("user", calls=2)), ann)  # a changed limit starts afresh


def test_charge_after_the_bucket_was_dropped_still_counts() -> None:
    clock = ManualClock()
    limiter = RateLimiter(clock=clock.now)
    limits = parsed(limit("user", tokens=60))
    ann = caller("ann")
    admission = limiter.admit("e", limits, ann)
    clock.advance(IDLE_EVICTION_S + 60)  # a long stream; the full bucket is swept meanwhile
    limiter.admit("e", limits, caller("bob"))
    admission.charge(100)
    assert refused(limiter, "e", limits, ann)


def test_idle_buckets_are_dropped_and_memory_stays_bounded() -> None:
    clock = ManualClock()
    limiter = RateLimiter(clock=clock.now)
    limits = parsed(limit("endpoint", calls=10**6), limit("user", calls=10, tokens=1000))
    for n in range(500):
        limiter.admit("e", limits, caller(f"user-{n}")).charge(10)
    assert limiter.bucket_count == 1 + 2 * 500
    clock.advance(60)  # refilled, but not yet idle for two minutes
    limiter.admit("e", limits, caller("late"))
    assert limiter.bucket_count == 1 + 2 * 501
    clock.advance(IDLE_EVICTION_S + 10)  # everyone idle for over two minutes now
    busy = caller("busy")
    admit_times(limiter, "e", limits, busy, 10)
    assert limiter.bucket_count == 1 + 2
    assert refused(limiter, "e", limits, busy)  # the live bucket was kept


def test_package_exports_its_api() -> None:
    for name in limits_package.__all__:
        assert hasattr(limits_package, name)
