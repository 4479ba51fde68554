"""The ``ai_gateway.rate_limits`` list of an endpoint, parsed and checked as Databricks does.

Each limit counts calls (QPM) and/or tokens (TPM) per minute for one key::

    [{"key": "endpoint", "renewal_period": "minute", "calls": 1000},
     {"key": "user", "renewal_period": "minute", "calls": 60, "tokens": 100000},
     {"key": "user_group", "principal": "data-scientists", "renewal_period": "minute",
      "tokens": 500000},
     {"key": "service_principal", "principal": "<application id>", "renewal_period": "minute",
      "calls": 10}]

A ``user`` or ``service_principal`` limit without ``principal`` is the default for each user or
service principal; with one, it is that principal's own limit. User names match without regard
to case (they are e-mail addresses); group names and application ids match exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from bastion.errors import InvalidRequest
from bastion.serving.guardrails.policy import type_phrase

MAX_LIMITS = 20
MAX_GROUP_LIMITS = 5
RENEWAL_PERIOD = "minute"
_ITEM_KEYS = ("key", "principal", "renewal_period", "calls", "tokens")


class RateLimitKey(StrEnum):
    """Whom a limit counts: everyone together, or each user, group or service principal."""

    ENDPOINT = "endpoint"
    USER = "user"
    USER_GROUP = "user_group"
    SERVICE_PRINCIPAL = "service_principal"


@dataclass(frozen=True, slots=True)
class Quota:
    """One counted dimension of a limit, e.g. 60 calls per minute."""

    dimension: Literal["calls", "tokens"]
    per_minute: int
    meter: str  # names the counter: the same limit and quota keep the same counter

    def __str__(self) -> str:
        return f"{self.per_minute} {self.dimension} per minute"


@dataclass(frozen=True)
class RateLimit:
    """One entry of ``rate_limits``."""

    key: RateLimitKey = RateLimitKey.ENDPOINT
    principal: str | None = None
    calls: int | None = None
    tokens: int | None = None
    quotas: tuple[Quota, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        subject = self.key.value if self.principal is None else f"{self.key}:{self.principal}"
        quotas: list[Quota] = []
        if self.calls is not None:
            quotas.append(Quota("calls", self.calls, f"{subject}/calls/{self.calls}"))
        if self.tokens is not None:
            quotas.append(Quota("tokens", self.tokens, f"{subject}/tokens/{self.tokens}"))
        object.__setattr__(self, "quotas", tuple(quotas))

    @property
    def is_default(self) -> bool:
        """Whether this is the default per-user or per-service-principal limit."""
        return self.principal is None and self.key in (
            RateLimitKey.USER,
            RateLimitKey.SERVICE_PRINCIPAL,
        )


@dataclass(frozen=True)
class RateLimits:
    """An endpoint's rate limits, indexed the way the limiter looks them up."""

    limits: tuple[RateLimit, ...]
    endpoint: RateLimit | None = field(init=False, repr=False, compare=False)
    user_default: RateLimit | None = field(init=False, repr=False, compare=False)
    service_principal_default: RateLimit | None = field(init=False, repr=False, compare=False)
    users: Mapping[str, RateLimit] = field(init=False, repr=False, compare=False)
    service_principals: Mapping[str, RateLimit] = field(init=False, repr=False, compare=False)
    groups: tuple[RateLimit, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[RateLimitKey, list[RateLimit]] = {key: [] for key in RateLimitKey}
        for limit in self.limits:
            index[limit.key].append(limit)
        setattr_ = object.__setattr__
        setattr_(self, "endpoint", next(iter(index[RateLimitKey.ENDPOINT]), None))
        setattr_(self, "user_default", _default(index[RateLimitKey.USER]))
        setattr_(self, "service_principal_default", _default(index[RateLimitKey.SERVICE_PRINCIPAL]))
        users = {
            limit.principal.casefold(): limit
            for limit in index[RateLimitKey.USER]
            if limit.principal is not None
        }
        setattr_(self, "users", users)
        principals = {
            limit.principal: limit
            for limit in index[RateLimitKey.SERVICE_PRINCIPAL]
            if limit.principal is not None
        }
        setattr_(self, "service_principals", principals)
        setattr_(self, "groups", tuple(index[RateLimitKey.USER_GROUP]))


def _default(limits: list[RateLimit]) -> RateLimit | None:
    return next((limit for limit in limits if limit.principal is None), None)


def parse_rate_limits(raw: Sequence[Mapping[str, Any]] | None) -> RateLimits | None:
    """Parse an ``ai_gateway.rate_limits`` list; None when there are no limits.

    Raises :class:`~bastion.errors.InvalidRequest` naming the entry and field to fix.

    >>> limits = parse_rate_limits([{"key": "user", "renewal_period": "minute", "calls": 60}])
    >>> str(limits.user_default.quotas[0])
    '60 calls per minute'
    """
    if raw is None:
        return None
    where = "ai_gateway.rate_limits"
    if not isinstance(raw, list):
        raise InvalidRequest(f"{where} must be a list of limits; got {type_phrase(raw)}.")
    if len(raw) > MAX_LIMITS:
        raise InvalidRequest(
            f"{where} has {len(raw)} limits; an endpoint allows at most {MAX_LIMITS}."
        )
    limits = tuple(_parse_limit(f"{where}[{index}]", item) for index, item in enumerate(raw))
    if not limits:
        return None
    groups = sum(limit.key is RateLimitKey.USER_GROUP for limit in limits)
    if groups > MAX_GROUP_LIMITS:
        raise InvalidRequest(
            f"{where} has {groups} user_group limits; an endpoint allows at most "
            f"{MAX_GROUP_LIMITS}."
        )
    seen: dict[tuple[RateLimitKey, str | None], int] = {}
    for index, limit in enumerate(limits):
        identity = (limit.key, _fold(limit))
        if identity in seen:
            whom = f"principal '{limit.principal}'" if limit.principal else "no principal"
            raise InvalidRequest(
                f"{where}[{index}] repeats {where}[{seen[identity]}] (key '{limit.key}' with "
                f"{whom}); give each key and principal one limit, with both calls and tokens "
                "if you need both."
            )
        seen[identity] = index
    return RateLimits(limits)


def _fold(limit: RateLimit) -> str | None:
    if limit.principal is not None and limit.key is RateLimitKey.USER:
        return limit.principal.casefold()
    return limit.principal


def _parse_limit(where: str, item: object) -> RateLimit:
    if not isinstance(item, Mapping):
        raise InvalidRequest(
            f'{where} must be an object such as {{"key": "user", "renewal_period": "minute", '
            f'"calls": 60}}; got {type_phrase(item)}.'
        )
    unknown = [str(name) for name in item if name not in _ITEM_KEYS]
    if unknown:
        raise InvalidRequest(
            f"{where} has unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(name) for name in unknown)}; allowed keys are "
            f"{', '.join(repr(name) for name in _ITEM_KEYS)}."
        )
    raw_key = item.get("key", RateLimitKey.ENDPOINT.value)
    if raw_key is None:
        raw_key = RateLimitKey.ENDPOINT.value
    if not isinstance(raw_key, str) or raw_key not in RateLimitKey._value2member_map_:
        allowed = ", ".join(repr(key.value) for key in RateLimitKey)
        raise InvalidRequest(f"{where}.key must be one of {allowed}; got {raw_key!r}.")
    key = RateLimitKey(raw_key)
    period = item.get("renewal_period")
    if period is None:
        raise InvalidRequest(f"{where}.renewal_period is required; set it to 'minute'.")
    if period != RENEWAL_PERIOD:
        raise InvalidRequest(
            f"{where}.renewal_period must be 'minute' (the only period supported); got {period!r}."
        )
    calls = _count(f"{where}.calls", item.get("calls"))
    tokens = _count(f"{where}.tokens", item.get("tokens"))
    if calls is None and tokens is None:
        raise InvalidRequest(
            f"{where} limits nothing; give 'calls' (requests per minute), 'tokens' (tokens per "
            "minute) or both."
        )
    principal = item.get("principal")
    if principal is not None and (not isinstance(principal, str) or not principal.strip()):
        raise InvalidRequest(
            f"{where}.principal must be a non-empty string; got {type_phrase(principal)}."
        )
    if key is RateLimitKey.ENDPOINT and principal is not None:
        raise InvalidRequest(
            f"{where} is an endpoint limit, which applies to all callers together and takes no "
            "principal; remove 'principal', or set 'key' to 'user', 'user_group' or "
            "'service_principal'."
        )
    if key is RateLimitKey.USER_GROUP and principal is None:
        raise InvalidRequest(
            f"{where} is a user_group limit without 'principal'; set it to the group's name."
        )
    return RateLimit(
        key=key,
        principal=principal.strip() if principal is not None else None,
        calls=calls,
        tokens=tokens,
    )


def _count(where: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequest(
            f"{where} must be a whole number, 0 or more (0 blocks every request); got {value!r}."
        )
    return value
