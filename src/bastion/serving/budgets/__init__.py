"""AI Gateway budgets: spend limits in tokens or money per endpoint, user or group, per UTC
day, week or month, that alert (webhook) or reject (429).

:mod:`.policy` parses ``ai_gateway.budgets`` and ``ai_gateway.pricing``; :mod:`.counters`
keeps spend (Redis with ``BASTION_REDIS_URL``, else this process); :mod:`.usage` reads the
spend before a counter existed from the usage table; :mod:`.alerts` delivers webhooks;
:mod:`.service` puts them on the gateway's path; :mod:`.views` shows spend to whoever may
see that usage. See docs/serving.md ("Budgets").
"""

from __future__ import annotations

from bastion.serving.budgets.policy import (
    Budget,
    BudgetKey,
    Budgets,
    Period,
    Price,
    Webhook,
    parse_budgets,
    window,
)
from bastion.serving.budgets.service import BudgetExceeded, BudgetService, Ticket, budgets_of

__all__ = [
    "Budget",
    "BudgetExceeded",
    "BudgetKey",
    "BudgetService",
    "Budgets",
    "Period",
    "Price",
    "Ticket",
    "Webhook",
    "budgets_of",
    "parse_budgets",
    "window",
]
