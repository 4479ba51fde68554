"""Budgets on the request path: refuse a request a used-up budget covers, count each
answered request's tokens or cost, alert on threshold crossings, and fill in each new
counter's earlier spend from the usage table.

The gateway calls :meth:`BudgetService.check` before forwarding (one Redis round trip, and
only for endpoints with ``reject`` budgets) and :meth:`Ticket.charge` after the answer (one
atomic script, in the background). Spend therefore lags by the requests in flight: a reject
budget stops new requests once its spend has reached the limit, and the requests already
admitted may carry it past the limit by what they cost.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from bastion.bus import RedisHealth
from bastion.egress import policy_of
from bastion.errors import BastionError, RateLimited, Unavailable
from bastion.identity.model import Caller, PrincipalKind
from bastion.secrets import parse_reference, secrets_of
from bastion.serving.budgets.alerts import Alert, AlertSender, crossed
from bastion.serving.budgets.counters import (
    CounterKey,
    MemorySpendStore,
    RedisSpendStore,
    Spend,
    SpendStore,
)
from bastion.serving.budgets.policy import (
    Budget,
    BudgetKey,
    Budgets,
    Window,
    parse_budgets,
    window,
)
from bastion.serving.budgets.usage import usage_spend

if TYPE_CHECKING:
    from bastion.observability.exchange import Exchange
    from bastion.platform import Platform

logger = logging.getLogger(__name__)

KEEP_AFTER_WINDOW_S = 24 * 3600


class BudgetExceeded(RateLimited):
    """HTTP 429: a ``reject`` budget that covers the caller is used up."""

    code = "budget_exceeded"

    def __init__(self, message: str, *, budget: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.budget = budget
        self.retry_after_s = retry_after_s


def subject_of(budget: Budget, caller: Caller) -> str:
    if budget.key is BudgetKey.ENDPOINT:
        return "*"
    if budget.key is BudgetKey.USER_GROUP:
        return f"group:{budget.principal}"
    if caller.kind is PrincipalKind.SERVICE_PRINCIPAL:
        return f"sp:{caller.name}"
    return f"user:{caller.name.casefold()}"


def applicable(budgets: Budgets, caller: Caller) -> list[Budget]:
    """The budgets that count ``caller``'s requests: endpoint budgets, its groups' budgets,
    and its own user (or service principal) budgets — else the defaults for every user (for
    a service principal: the service principal defaults, else the user defaults)."""
    out: list[Budget] = []
    own: list[Budget] = []
    sp_defaults: list[Budget] = []
    user_defaults: list[Budget] = []
    is_sp = caller.kind is PrincipalKind.SERVICE_PRINCIPAL
    folded = caller.name.casefold()
    for budget in budgets.budgets:
        if budget.key is BudgetKey.ENDPOINT:
            out.append(budget)
        elif budget.key is BudgetKey.USER_GROUP:
            if budget.principal in caller.groups:
                out.append(budget)
        elif budget.key is BudgetKey.SERVICE_PRINCIPAL:
            if budget.principal is None:
                sp_defaults.append(budget)
            elif is_sp and budget.principal == caller.name:
                own.append(budget)
        elif budget.principal is None:
            user_defaults.append(budget)
        elif not is_sp and budget.principal.casefold() == folded:
            own.append(budget)
    if own:
        out += own
    elif is_sp:
        out += sp_defaults or user_defaults
    else:
        out += user_defaults
    return out


@dataclass(frozen=True)
class _Counted:
    budget: Budget
    key: CounterKey
    window: Window


class Ticket:
    """The budgets one admitted request counts against; charged after its answer."""

    __slots__ = ("_counted", "_service", "budgets", "endpoint")

    def __init__(
        self, service: BudgetService, endpoint: str, budgets: Budgets, counted: list[_Counted]
    ) -> None:
        self._service = service
        self.endpoint = endpoint
        self.budgets = budgets
        self._counted = counted

    def charge(self, exchange: Exchange) -> None:
        entity = getattr(exchange.entity, "served_entity_name", None)
        amounts = [
            self.budgets.amount(c.budget, entity, exchange.input_tokens, exchange.output_tokens)
            for c in self._counted
        ]
        pairs = [(c, a) for c, a in zip(self._counted, amounts, strict=True) if a > 0]
        if pairs:
            self._service.charge_later(self, pairs, int(exchange.started_wall * 1000))


class BudgetService:
    """Budgets of every endpoint, for one process; counters in ``store``."""

    def __init__(
        self,
        platform: Platform,
        store: SpendStore,
        *,
        health: RedisHealth | None = None,
        unavailable: Literal["refuse", "admit"] = "refuse",
        sender: AlertSender | None = None,
        settle_s: float | None = None,
        now: Callable[[], float] = time.time,
        baseline_interval_s: float = 1.0,
    ) -> None:
        self.platform = platform
        self.store = store
        self.health = health
        self.unavailable = unavailable
        self.sender = sender or AlertSender(policy_of(platform))
        # Rows of requests counted before a counter existed must be in Delta before its base
        # is read: every replica's writer commits within its flush interval.
        self.settle_s = (
            settle_s if settle_s is not None else 2 * platform.settings.writer_flush_interval_s + 3
        )
        self.now = now
        self.baseline_interval_s = baseline_interval_s
        self.counts: Counter[str] = Counter()  # rejected, charge_failed, baselines
        self._parsed: dict[str, tuple[object, Budgets | None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._baselines: dict[CounterKey, tuple[Budgets, Budget, Window, int]] = {}
        self._baseline_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- configuration --------------------------------------------------------------------

    def budgets_of(self, endpoint: str, ai_gateway: dict[str, Any]) -> Budgets | None:
        """An endpoint's parsed budgets (parsed once per ``ai_gateway`` object)."""
        cached = self._parsed.get(endpoint)
        if cached is not None and cached[0] is ai_gateway:
            return cached[1]
        raw = ai_gateway.get("budgets")
        parsed = parse_budgets(raw, ai_gateway.get("pricing")) if raw else None
        self._parsed[endpoint] = (ai_gateway, parsed)
        return parsed

    def counted(self, endpoint: str, budgets: Budgets, budget: Budget, subject: str) -> _Counted:
        current = window(budget.period, datetime.fromtimestamp(self.now(), UTC))
        key = CounterKey(endpoint, budget.name, budget.unit, current.id, subject)
        return _Counted(budget, key, current)

    # -- the request path -----------------------------------------------------------------

    async def check(
        self, endpoint: str, ai_gateway: dict[str, Any], caller: Caller
    ) -> Ticket | None:
        """Refuse (BudgetExceeded, 429) if a used-up reject budget covers ``caller``;
        otherwise the ticket to charge once the request is answered (None: no budgets)."""
        budgets = self.budgets_of(endpoint, ai_gateway)
        if budgets is None:
            return None
        counted = [
            self.counted(endpoint, budgets, b, subject_of(b, caller))
            for b in applicable(budgets, caller)
        ]
        if not counted:
            return None
        rejecting = [c for c in counted if c.budget.action == "reject"]
        if rejecting:
            spends = await self._totals(endpoint, rejecting)
            if spends is not None:
                for entry, spend in zip(rejecting, spends, strict=True):
                    if spend.baseline_pending:
                        self._want_baseline(budgets, entry, spend)
                    if spend.total >= entry.budget.limit:
                        self.counts["rejected"] += 1
                        raise self._exceeded(endpoint, entry, spend, caller)
        return Ticket(self, endpoint, budgets, counted)

    async def _totals(self, endpoint: str, counted: list[_Counted]) -> list[Spend] | None:
        """The spends, or None when Redis is down and the policy admits."""
        if self.health is not None and not self.health.available():
            self._fallback(endpoint)
            return None
        try:
            return await self.store.totals([c.key for c in counted])
        except Exception as exc:
            if self.health is not None:
                self.health.failed("budget")
            logger.warning("budgets of %s not checked: %s", endpoint, type(exc).__name__)
            self._fallback(endpoint)
            return None

    def _fallback(self, endpoint: str) -> None:
        """Raise Unavailable (policy "refuse"), or return to admit uncounted ("admit")."""
        if self.unavailable == "admit":
            if self.health is not None:
                self.health.fell_back("budget", "admitted")
            return None
        if self.health is not None:
            self.health.fell_back("budget", "refused")
        error = Unavailable(
            f"The budgets of endpoint '{endpoint}' cannot be checked now: the shared counter "
            "store (Redis) is unreachable. Try again shortly."
        )
        error.retry_after_s = 1  # type: ignore[attr-defined]  # read by the gateway
        raise error

    def _exceeded(
        self, endpoint: str, entry: _Counted, spend: Spend, caller: Caller
    ) -> BudgetExceeded:
        budget = entry.budget
        if budget.key is BudgetKey.ENDPOINT:
            whom = "for all callers together"
        elif budget.key is BudgetKey.USER_GROUP:
            whom = f"for group '{budget.principal}', shared by its members"
        else:
            kind = "service principal" if budget.key is BudgetKey.SERVICE_PRINCIPAL else "user"
            whom = f"for {kind} '{caller.name}'"
        spent = f"{spend.total:,.0f}" if budget.unit == "tokens" else f"{spend.total:,.4f}"
        renews = entry.window.end.strftime("%Y-%m-%dT%H:%M:%SZ")
        now = datetime.fromtimestamp(self.now(), UTC)
        return BudgetExceeded(
            f"Budget '{budget.name}' of endpoint '{endpoint}' is used up: {budget.describe()} "
            f"{whom} (spent {spent}). It renews at {renews}.",
            budget=budget.name,
            retry_after_s=entry.window.seconds_left(now),
        )

    def charge_later(
        self, ticket: Ticket, pairs: list[tuple[_Counted, float]], since_ms: int
    ) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._charge(ticket, pairs, since_ms))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _charge(
        self, ticket: Ticket, pairs: list[tuple[_Counted, float]], since_ms: int
    ) -> None:
        if self.health is not None and not self.health.available():
            self.counts["charge_failed"] += 1
            self.health.fell_back("budget_charge", "uncounted")
            return
        now = datetime.fromtimestamp(self.now(), UTC)
        ttls = [c.window.seconds_left(now) + KEEP_AFTER_WINDOW_S for c, _ in pairs]
        try:
            after = await self.store.add(
                [c.key for c, _ in pairs], [a for _, a in pairs], since_ms, ttls
            )
        except Exception as exc:
            self.counts["charge_failed"] += 1
            if self.health is not None:
                self.health.failed("budget_charge")
                self.health.fell_back("budget_charge", "uncounted")
            logger.warning("budget spend not counted: %s", type(exc).__name__)
            return
        for (entry, amount), spend in zip(pairs, after, strict=True):
            if spend.baseline_pending:
                self._want_baseline(ticket.budgets, entry, spend)
            self._alert(ticket.endpoint, entry, spend.total - amount, spend.total)

    async def drain(self) -> None:
        """Wait for the charges still being sent (tests; shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- alerts ---------------------------------------------------------------------------

    def _alert(self, endpoint: str, entry: _Counted, before: float, after: float) -> None:
        budget = entry.budget
        if budget.webhook is None:
            return
        points = crossed(before, after, budget.limit, budget.alert_at_percent)
        if not points:
            return
        threading.Thread(
            target=self._claim_and_send,
            args=(endpoint, entry, points, after),
            name="bastion-budget-alert",
            daemon=True,
        ).start()

    def _claim_and_send(
        self, endpoint: str, entry: _Counted, points: list[int], spent: float
    ) -> None:
        budget = entry.budget
        assert budget.webhook is not None
        now = datetime.fromtimestamp(self.now(), UTC)
        ttl = entry.window.seconds_left(now) + KEEP_AFTER_WINDOW_S
        secret = None
        for percent in points:
            token = f"{entry.key.redis_key}:alert:{percent}:{budget.limit!r}"
            try:
                if not self.store.claim(token, ttl):
                    continue  # another replica sends this one
            except Exception as exc:
                if self.health is not None:
                    self.health.failed("budget_alert")
                logger.warning("budget alert not claimed: %s", type(exc).__name__)
                continue
            if budget.webhook.secret is not None and secret is None:
                try:
                    secret = secrets_of(self.platform).resolve(
                        parse_reference(budget.webhook.secret)
                    )
                except BastionError as exc:
                    logger.warning("budget '%s': webhook secret unusable: %s", budget.name, exc)
                    self.counts["alerts_unsigned"] += 1
            self.counts["alerts"] += 1
            self.sender.send(
                Alert(
                    url=budget.webhook.url,
                    secret=secret,
                    body={
                        "event": "budget.threshold_crossed",
                        "endpoint": endpoint,
                        "budget": budget.name,
                        "key": budget.key.value,
                        "subject": _display(entry.key.subject),
                        "renewal_period": budget.period.value,
                        "window_start": entry.window.start.isoformat(),
                        "window_end": entry.window.end.isoformat(),
                        "unit": budget.unit,
                        "limit": budget.limit,
                        "spent": round(spent, 6),
                        "threshold_percent": percent,
                        "action": budget.action,
                        "sent_at": now.isoformat(),
                    },
                )
            )

    # -- baselines ------------------------------------------------------------------------

    def _want_baseline(self, budgets: Budgets, entry: _Counted, spend: Spend) -> None:
        assert spend.since_ms is not None
        with self._baseline_lock:
            if entry.key not in self._baselines:
                self._baselines[entry.key] = (budgets, entry.budget, entry.window, spend.since_ms)
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(
                target=self._baseline_loop, name="bastion-budget-baselines", daemon=True
            )
            self._thread.start()

    def _baseline_loop(self) -> None:
        while not self._stop.wait(self.baseline_interval_s):
            try:
                self.fill_baselines()
            except Exception:
                logger.exception("budget baselines failed")

    def fill_baselines(self, *, force: bool = False) -> int:
        """Read the usage table for counters whose settle time has passed; returns how many
        were filled in (``force``: do not wait for the settle time)."""
        now_ms = self.now() * 1000
        with self._baseline_lock:
            due = {
                key: item
                for key, item in self._baselines.items()
                if force or item[3] + self.settle_s * 1000 <= now_ms
            }
        filled = 0
        for key, (budgets, budget, current, since_ms) in due.items():
            since = datetime.fromtimestamp(since_ms / 1000, UTC)
            spend = usage_spend(
                self.platform, key.endpoint, budgets, budget, [(key.subject, since)], current.start
            ).get(key.subject, 0.0)
            try:
                after = self.store.set_base(key, spend)
            except Exception as exc:
                if self.health is not None:
                    self.health.failed("budget_baseline")
                logger.warning("budget baseline not stored: %s", type(exc).__name__)
                continue
            with self._baseline_lock:
                self._baselines.pop(key, None)
            filled += 1
            self.counts["baselines"] += 1
            if after is not None and spend > 0:
                self._alert(key.endpoint, _Counted(budget, key, current), after.spent, after.total)
        return filled

    # -- reading spend (REST) -------------------------------------------------------------

    def spend(self, entries: list[_Counted]) -> list[Spend]:
        return self.store.read([e.key for e in entries])

    def subjects(self, entry: _Counted) -> list[str]:
        return self.store.subjects(entry.key)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.sender.close()


def _display(subject: str) -> str:
    """``user:ana@example.com`` → ``ana@example.com``; the endpoint's ``*`` stays."""
    return subject.partition(":")[2] or subject


def budgets_of(platform: Platform) -> BudgetService:
    """The platform's budget service (``platform.budgets``), created on first use."""
    service = getattr(platform, "budgets", None)
    if isinstance(service, BudgetService):
        return service
    settings = platform.settings
    store: SpendStore = (
        RedisSpendStore(settings.redis) if settings.redis is not None else MemorySpendStore()
    )
    service = BudgetService(
        platform,
        store,
        health=platform.redis_health,
        unavailable=settings.redis_unavailable,
    )
    platform.budgets = service  # type: ignore[attr-defined]
    return service
