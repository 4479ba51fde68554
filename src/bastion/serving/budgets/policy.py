"""An endpoint's ``ai_gateway.budgets`` and ``ai_gateway.pricing``, parsed and checked.

Budgets cap what an endpoint may spend, in tokens or in money, per UTC day, week (from
Monday) or month, the way ``rate_limits`` caps calls per minute::

    "budgets": [
      {"name": "team-monthly", "key": "user_group", "principal": "analysts",
       "renewal_period": "month", "cost": 250.0, "action": "reject"},
      {"name": "daily-tokens", "key": "user", "renewal_period": "day", "tokens": 200000,
       "action": "alert", "alert_at_percent": [80, 100],
       "webhook": {"url": "https://hooks.example.com/budget",
                   "secret": "{{secrets/ops/budget-hook}}"}}
    ],
    "pricing": [
      {"served_entity_name": "gpt-4o", "input_per_million_tokens": 2.5,
       "output_per_million_tokens": 10.0}
    ]

``key`` says whose spend a budget counts: ``endpoint`` (everyone together), ``user`` or
``service_principal`` (without ``principal``: each one separately; with one: that principal
only — and then it replaces the default for them), ``user_group`` (the group's members
together). Every budget that covers a caller counts its requests. ``reject`` refuses requests
(429, naming the budget) once the spend has reached the limit; ``alert`` only notifies. A
budget with a ``webhook`` is POSTed to when its spend crosses each of ``alert_at_percent``
(default ``[100]``), once per crossing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from bastion.errors import InvalidRequest
from bastion.serving.guardrails.policy import type_phrase

MAX_BUDGETS = 20
MAX_THRESHOLDS = 10
MAX_PRICES = 50
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_BUDGET_KEYS = (
    "name",
    "key",
    "principal",
    "renewal_period",
    "tokens",
    "cost",
    "action",
    "alert_at_percent",
    "webhook",
)
_PRICE_KEYS = ("served_entity_name", "input_per_million_tokens", "output_per_million_tokens")


class BudgetKey(StrEnum):
    """Whose spend a budget counts."""

    ENDPOINT = "endpoint"
    USER = "user"
    USER_GROUP = "user_group"
    SERVICE_PRINCIPAL = "service_principal"


class Period(StrEnum):
    """The UTC window a budget renews over."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True)
class Window:
    """One renewal window: ``[start, end)`` in UTC, and a short id for counter keys."""

    start: datetime
    end: datetime
    id: str

    def seconds_left(self, now: datetime) -> int:
        return max(1, math.ceil((self.end - now).total_seconds()))


def window(period: Period, now: datetime) -> Window:
    """The window of ``period`` that holds ``now`` (UTC; weeks start on Monday).

    >>> w = window(Period.WEEK, datetime(2026, 12, 6, 15, 0, tzinfo=UTC))
    >>> w.start.isoformat(), w.end.isoformat(), w.id
    ('2026-11-30T00:00:00+00:00', '2026-12-07T00:00:00+00:00', 'w20261130')
    """
    now = now.astimezone(UTC)
    day = datetime(now.year, now.month, now.day, tzinfo=UTC)
    if period is Period.DAY:
        return Window(day, day + timedelta(days=1), f"d{day:%Y%m%d}")
    if period is Period.WEEK:
        start = day - timedelta(days=day.weekday())
        return Window(start, start + timedelta(days=7), f"w{start:%Y%m%d}")
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    end = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=UTC)
    return Window(start, end, f"m{start:%Y%m}")


@dataclass(frozen=True)
class Webhook:
    url: str
    #: A ``{{secrets/scope/key}}`` reference: its value signs each delivery (HMAC-SHA256).
    secret: str | None = None


@dataclass(frozen=True)
class Budget:
    """One entry of ``budgets``."""

    name: str
    key: BudgetKey
    period: Period
    limit: float
    unit: Literal["tokens", "cost"]
    action: Literal["alert", "reject"]
    principal: str | None = None
    alert_at_percent: tuple[int, ...] = (100,)
    webhook: Webhook | None = None

    @property
    def is_default(self) -> bool:
        """A per-user or per-service-principal budget without a principal: one each."""
        return self.principal is None and self.key in (
            BudgetKey.USER,
            BudgetKey.SERVICE_PRINCIPAL,
        )

    def describe(self) -> str:
        amount = f"{self.limit:,.0f} tokens" if self.unit == "tokens" else f"{self.limit:,.2f}"
        if self.unit == "cost":
            amount = f"cost {amount}"
        return f"{amount} per {self.period.value}"

    def as_config(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "key": self.key.value,
            "renewal_period": self.period.value,
            self.unit: int(self.limit) if self.unit == "tokens" else self.limit,
            "action": self.action,
            "alert_at_percent": list(self.alert_at_percent),
        }
        if self.principal is not None:
            out["principal"] = self.principal
        if self.webhook is not None:
            out["webhook"] = {"url": self.webhook.url}
            if self.webhook.secret is not None:
                out["webhook"]["secret"] = self.webhook.secret
        return out


@dataclass(frozen=True)
class Price:
    """Money per million input and output tokens of one served entity."""

    input_per_million_tokens: float
    output_per_million_tokens: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (
            input_tokens * self.input_per_million_tokens
            + output_tokens * self.output_per_million_tokens
        ) / 1_000_000


@dataclass(frozen=True)
class Budgets:
    """An endpoint's budgets and prices."""

    budgets: tuple[Budget, ...]
    prices: Mapping[str, Price] = field(default_factory=dict)

    def named(self, name: str) -> Budget | None:
        return next((b for b in self.budgets if b.name == name), None)

    def amount(
        self, budget: Budget, served_entity: str | None, input_tokens: int, output_tokens: int
    ) -> float:
        """What one request adds to ``budget``: its tokens, or their price."""
        if budget.unit == "tokens":
            return float(input_tokens + output_tokens)
        price = self.prices.get(served_entity or "")
        return price.cost(input_tokens, output_tokens) if price is not None else 0.0


def parse_budgets(
    raw: Sequence[Mapping[str, Any]] | None, pricing: Sequence[Mapping[str, Any]] | None = None
) -> Budgets | None:
    """Parse ``ai_gateway.budgets`` and ``ai_gateway.pricing``; None when there are no budgets.

    Raises :class:`~bastion.errors.InvalidRequest` naming the entry and field to fix.

    >>> parsed = parse_budgets([{"name": "daily", "key": "user", "renewal_period": "day",
    ...                          "tokens": 1000, "action": "reject"}])
    >>> parsed.budgets[0].describe()
    '1,000 tokens per day'
    """
    prices = _parse_pricing(pricing)
    if raw is None:
        return None
    where = "ai_gateway.budgets"
    if not isinstance(raw, list):
        raise InvalidRequest(f"{where} must be a list of budgets; got {type_phrase(raw)}.")
    if len(raw) > MAX_BUDGETS:
        raise InvalidRequest(
            f"{where} has {len(raw)} budgets; an endpoint allows at most {MAX_BUDGETS}."
        )
    budgets = tuple(_parse_budget(f"{where}[{index}]", item) for index, item in enumerate(raw))
    if not budgets:
        return None
    seen: dict[str, int] = {}
    for index, budget in enumerate(budgets):
        if budget.name in seen:
            raise InvalidRequest(
                f"{where}[{index}] repeats the name '{budget.name}' of {where}[{seen[budget.name]}]"
                "; give each budget a name of its own."
            )
        seen[budget.name] = index
    return Budgets(budgets, prices)


def _parse_budget(where: str, item: object) -> Budget:
    if not isinstance(item, Mapping):
        raise InvalidRequest(
            f'{where} must be an object such as {{"name": "daily", "key": "user", '
            f'"renewal_period": "day", "tokens": 100000, "action": "reject"}}; got '
            f"{type_phrase(item)}."
        )
    unknown = [str(name) for name in item if name not in _BUDGET_KEYS]
    if unknown:
        raise InvalidRequest(
            f"{where} has unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(name) for name in unknown)}; allowed keys are "
            f"{', '.join(repr(name) for name in _BUDGET_KEYS)}."
        )
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidRequest(
            f"{where}.name must be 1-64 letters, digits, '_', '.' or '-' (starting with a letter "
            f"or digit); got {name!r}."
        )
    raw_key = item.get("key", BudgetKey.ENDPOINT.value)
    if not isinstance(raw_key, str) or raw_key not in BudgetKey._value2member_map_:
        allowed = ", ".join(repr(key.value) for key in BudgetKey)
        raise InvalidRequest(f"{where}.key must be one of {allowed}; got {raw_key!r}.")
    key = BudgetKey(raw_key)
    period = item.get("renewal_period")
    if not isinstance(period, str) or period not in Period._value2member_map_:
        raise InvalidRequest(
            f"{where}.renewal_period must be 'day', 'week' or 'month' (UTC); got {period!r}."
        )
    tokens, cost = item.get("tokens"), item.get("cost")
    if (tokens is None) == (cost is None):
        raise InvalidRequest(
            f"{where} needs exactly one of 'tokens' (input plus output tokens) or 'cost' (money, "
            "at the prices in ai_gateway.pricing)."
        )
    unit: Literal["tokens", "cost"]
    if tokens is not None:
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            raise InvalidRequest(
                f"{where}.tokens must be a whole number, 0 or more; got {tokens!r}."
            )
        unit, limit = "tokens", float(tokens)
    else:
        if isinstance(cost, bool) or not isinstance(cost, (int, float)) or not math.isfinite(cost):
            raise InvalidRequest(f"{where}.cost must be a number, 0 or more; got {cost!r}.")
        if cost < 0:
            raise InvalidRequest(f"{where}.cost must be a number, 0 or more; got {cost!r}.")
        unit, limit = "cost", float(cost)
    action = item.get("action", "alert")
    if action not in ("alert", "reject"):
        raise InvalidRequest(f"{where}.action must be 'alert' or 'reject'; got {action!r}.")
    principal = item.get("principal")
    if principal is not None and (not isinstance(principal, str) or not principal.strip()):
        raise InvalidRequest(
            f"{where}.principal must be a non-empty string; got {type_phrase(principal)}."
        )
    if key is BudgetKey.ENDPOINT and principal is not None:
        raise InvalidRequest(
            f"{where} is an endpoint budget, which counts all callers together and takes no "
            "principal; remove 'principal', or set 'key' to 'user', 'user_group' or "
            "'service_principal'."
        )
    if key is BudgetKey.USER_GROUP and principal is None:
        raise InvalidRequest(
            f"{where} is a user_group budget without 'principal'; set it to the group's name."
        )
    thresholds = _thresholds(f"{where}.alert_at_percent", item.get("alert_at_percent"))
    webhook = _webhook(f"{where}.webhook", item.get("webhook"))
    if action == "alert" and webhook is None:
        raise InvalidRequest(
            f"{where} is an 'alert' budget without a 'webhook'; add "
            '{"webhook": {"url": "https://..."}} or set "action": "reject".'
        )
    return Budget(
        name=name,
        key=key,
        period=Period(period),
        limit=limit,
        unit=unit,
        action=action,
        principal=principal.strip() if principal is not None else None,
        alert_at_percent=thresholds,
        webhook=webhook,
    )


def _thresholds(where: str, value: object) -> tuple[int, ...]:
    if value is None:
        return (100,)
    if not isinstance(value, list) or not value or len(value) > MAX_THRESHOLDS:
        raise InvalidRequest(
            f"{where} must be a list of 1 to {MAX_THRESHOLDS} percentages, e.g. [80, 100]; got "
            f"{type_phrase(value)}."
        )
    out: list[int] = []
    for number in value:
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 1000:
            raise InvalidRequest(
                f"{where} holds {number!r}; each percentage must be a whole number, 1 to 1000."
            )
        out.append(number)
    return tuple(sorted(set(out)))


def _webhook(where: str, value: object) -> Webhook | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidRequest(f'{where} must be an object {{"url": "https://..."}}.')
    unknown = [str(name) for name in value if name not in ("url", "secret")]
    if unknown:
        raise InvalidRequest(
            f"{where} has unknown keys {', '.join(repr(n) for n in unknown)}; allowed keys are "
            "'url' and 'secret'."
        )
    url = value.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 2048:
        raise InvalidRequest(f"{where}.url must be an http(s) URL; got {url!r}.")
    secret = value.get("secret")
    if secret is not None and not isinstance(secret, str):
        raise InvalidRequest(
            f"{where}.secret must be a secret reference '{{{{secrets/<scope>/<key>}}}}'."
        )
    return Webhook(url, secret)


def _parse_pricing(raw: Sequence[Mapping[str, Any]] | None) -> dict[str, Price]:
    if raw is None:
        return {}
    where = "ai_gateway.pricing"
    if not isinstance(raw, list):
        raise InvalidRequest(f"{where} must be a list of prices; got {type_phrase(raw)}.")
    if len(raw) > MAX_PRICES:
        raise InvalidRequest(f"{where} has {len(raw)} entries; at most {MAX_PRICES}.")
    prices: dict[str, Price] = {}
    for index, item in enumerate(raw):
        at = f"{where}[{index}]"
        if not isinstance(item, Mapping):
            raise InvalidRequest(
                f'{at} must be an object such as {{"served_entity_name": "gpt", '
                '"input_per_million_tokens": 2.5, "output_per_million_tokens": 10}.'
            )
        unknown = [str(name) for name in item if name not in _PRICE_KEYS]
        if unknown:
            raise InvalidRequest(
                f"{at} has unknown keys {', '.join(repr(n) for n in unknown)}; allowed keys are "
                f"{', '.join(repr(n) for n in _PRICE_KEYS)}."
            )
        name = item.get("served_entity_name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"{at}.served_entity_name must name a served entity.")
        if name in prices:
            raise InvalidRequest(f"{at} repeats the price of served entity '{name}'.")
        amounts = []
        for field_name in _PRICE_KEYS[1:]:
            amount = item.get(field_name, 0)
            if (
                isinstance(amount, bool)
                or not isinstance(amount, (int, float))
                or not math.isfinite(amount)
                or amount < 0
            ):
                raise InvalidRequest(f"{at}.{field_name} must be a number, 0 or more.")
            amounts.append(float(amount))
        prices[name] = Price(*amounts)
    return prices
