"""What a caller may see of an endpoint's budgets: the configuration, and the spend of whom
they may see the usage of.

Spend is usage. Whoever may see all of an endpoint's usage — its managers (``CAN_MANAGE``,
admins included) and whoever may ``SELECT`` from ``system.serving.endpoint_usage`` — sees
every budget's spend, for every subject. Anyone else who may view the endpoint sees the
budgets' configuration (without webhooks) and the spend of their *own* user or service
principal budgets; endpoint and group budgets count other people's requests too, so their
spend is hidden from them (``"spend_visible": false``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bastion.errors import NotFound, PermissionDenied
from bastion.identity.model import Caller, PrincipalKind
from bastion.serving.budgets.counters import CounterKey, Spend
from bastion.serving.budgets.policy import Budget, BudgetKey, Budgets
from bastion.serving.budgets.service import BudgetService, _Counted, applicable, subject_of


def _subject_for(budget: Budget, principal: str, kind: PrincipalKind | None) -> str | None:
    """The subject of ``budget`` a named principal's spend is counted under (None: the
    budget does not count that principal on its own)."""
    if budget.key is BudgetKey.ENDPOINT:
        return "*"
    if budget.key is BudgetKey.USER_GROUP:
        return f"group:{budget.principal}"
    if budget.key is BudgetKey.SERVICE_PRINCIPAL:
        if budget.principal is not None and budget.principal != principal:
            return None
        return f"sp:{principal}"
    if budget.principal is not None and budget.principal.casefold() != principal.casefold():
        return None
    if kind is PrincipalKind.SERVICE_PRINCIPAL:
        return f"sp:{principal}"
    return f"user:{principal.casefold()}"


def _spend_row(budget: Budget, subject: str, spend: Spend) -> dict[str, Any]:
    total = spend.total
    return {
        "subject": subject.partition(":")[2] or subject,
        "spent": round(total, 6),
        "remaining": round(max(0.0, budget.limit - total), 6),
        "used_percent": round(100 * total / budget.limit, 2) if budget.limit else None,
        "exhausted": total >= budget.limit,
        "baseline_pending": spend.baseline_pending,
    }


def budget_views(
    service: BudgetService,
    caller: Caller,
    endpoint: str,
    ai_gateway: dict[str, Any],
    *,
    sees_all: bool,
    manages: bool,
    principal: str | None = None,
    principal_kind: PrincipalKind | None = None,
    name: str | None = None,
) -> list[dict[str, Any]]:
    """The budgets of ``endpoint`` as ``caller`` may see them (``name``: just that one;
    ``principal``: the spend counted for that principal)."""
    budgets: Budgets | None = service.budgets_of(endpoint, ai_gateway)
    chosen = list(budgets.budgets) if budgets is not None else []
    if name is not None:
        chosen = [b for b in chosen if b.name == name]
        if not chosen:
            raise NotFound(f"Endpoint '{endpoint}' has no budget named '{name}'.")
    if principal is not None and not sees_all and principal.casefold() != caller.name.casefold():
        raise PermissionDenied(
            f"You may see the spend of your own budgets only; the spend of '{principal}' on "
            f"endpoint '{endpoint}' is visible to the endpoint's managers and to readers of "
            "system.serving.endpoint_usage."
        )
    own = set(id(b) for b in applicable(budgets, caller)) if budgets is not None else set()
    now = datetime.now(UTC)
    out: list[dict[str, Any]] = []
    for budget in chosen:
        assert budgets is not None
        entry = service.counted(endpoint, budgets, budget, "*")
        view = budget.as_config()
        if not manages:
            view.pop("webhook", None)
        view["window_start"] = entry.window.start.isoformat()
        view["window_end"] = entry.window.end.isoformat()
        view["renews_in_s"] = entry.window.seconds_left(now)
        subjects: list[str] = []
        if sees_all:
            if principal is not None:
                found = _subject_for(budget, principal, principal_kind)
                subjects = [found] if found is not None else []
            elif budget.is_default:
                subjects = service.subjects(entry)
            else:
                found = _subject_for(budget, budget.principal or "*", None)
                subjects = [found] if found is not None else []
        elif id(budget) in own and budget.key in (BudgetKey.USER, BudgetKey.SERVICE_PRINCIPAL):
            subjects = [subject_of(budget, caller)]
        view["spend_visible"] = sees_all or bool(subjects)
        counters = [
            _Counted(
                budget,
                CounterKey(endpoint, budget.name, budget.unit, entry.window.id, s),
                entry.window,
            )
            for s in subjects
        ]
        spends = service.spend(counters) if counters else []
        view["spend"] = [
            _spend_row(budget, c.key.subject, spend)
            for c, spend in zip(counters, spends, strict=True)
        ]
        view["applies_to_you"] = id(budget) in own
        out.append(view)
    return out
