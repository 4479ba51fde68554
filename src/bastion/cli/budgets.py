"""``bastion budgets``: an endpoint's budgets, their current spend, and changing them.

``list`` and ``get`` read ``/api/2.0/serving-endpoints/{name}/budgets``; ``set``, ``delete``
and ``price`` change the endpoint's ``ai_gateway`` (read, edit, ``PUT …/ai-gateway``).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer

from bastion.cli.common import client, print_json, print_table

budgets = typer.Typer(
    help="Endpoint budgets: spend limits in tokens or cost, and their current spend.",
    no_args_is_help=True,
)

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _path(endpoint: str) -> str:
    return f"/api/2.0/serving-endpoints/{quote(endpoint, safe='')}"


def _rows(views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for view in views:
        limit = view.get("tokens", view.get("cost"))
        base = {
            "budget": view["name"],
            "key": view["key"] + (f":{view['principal']}" if view.get("principal") else ""),
            "period": view["renewal_period"],
            "limit": f"{limit} {'tokens' if 'tokens' in view else 'cost'}",
            "action": view["action"],
        }
        spends = view.get("spend") or []
        if not spends:
            rows.append({**base, "subject": "", "spent": "" if view["spend_visible"] else "hidden"})
        for spend in spends:
            rows.append(
                {
                    **base,
                    "subject": spend["subject"],
                    "spent": spend["spent"],
                    "used %": spend["used_percent"],
                    "exhausted": spend["exhausted"],
                }
            )
    return rows


_COLUMNS = ["budget", "key", "period", "limit", "action", "subject", "spent", "used %", "exhausted"]


@budgets.command("list")
def budgets_list(
    endpoint: str,
    principal: Annotated[str | None, typer.Option(help="The spend counted for this one.")] = None,
    as_json: AsJson = False,
) -> None:
    """The endpoint's budgets with the current window's spend you may see."""
    params = {"principal": principal} if principal else None
    with client() as c:
        views = c.request("GET", f"{_path(endpoint)}/budgets", params=params)["budgets"]
    if as_json:
        print_json(views)
        return
    print_table(_rows(views), _COLUMNS, False)


@budgets.command("get")
def budgets_get(
    endpoint: str,
    name: str,
    principal: Annotated[str | None, typer.Option(help="The spend counted for this one.")] = None,
) -> None:
    """One budget, its window and its spend, as JSON."""
    params = {"principal": principal} if principal else None
    with client() as c:
        print_json(
            c.request("GET", f"{_path(endpoint)}/budgets/{quote(name, safe='')}", params=params)
        )


def _gateway(c: Any, endpoint: str) -> dict[str, Any]:
    return dict(c.request("GET", _path(endpoint)).get("ai_gateway") or {})


@budgets.command("set")
def budgets_set(
    endpoint: str,
    name: str,
    period: Annotated[str, typer.Option(help="day, week or month (UTC).")],
    tokens: Annotated[int | None, typer.Option(help="Limit in input + output tokens.")] = None,
    cost: Annotated[float | None, typer.Option(help="Limit in money (see `price`).")] = None,
    key: Annotated[
        str, typer.Option(help="endpoint, user, user_group or service_principal.")
    ] = "endpoint",
    principal: Annotated[str | None, typer.Option(help="The user, group or SP.")] = None,
    action: Annotated[str, typer.Option(help="reject (429) or alert (webhook).")] = "reject",
    alert_at: Annotated[
        list[int] | None, typer.Option("--alert-at", help="Percent; repeat (default 100).")
    ] = None,
    webhook: Annotated[str | None, typer.Option(help="URL POSTed at each threshold.")] = None,
    webhook_secret: Annotated[
        str | None, typer.Option(help="{{secrets/scope/key}} that signs each POST.")
    ] = None,
) -> None:
    """Add or replace the budget NAME of ENDPOINT."""
    budget: dict[str, Any] = {"name": name, "key": key, "renewal_period": period, "action": action}
    if tokens is not None:
        budget["tokens"] = tokens
    if cost is not None:
        budget["cost"] = cost
    if principal:
        budget["principal"] = principal
    if alert_at:
        budget["alert_at_percent"] = alert_at
    if webhook:
        budget["webhook"] = {"url": webhook}
        if webhook_secret:
            budget["webhook"]["secret"] = webhook_secret
    with client() as c:
        gateway = _gateway(c, endpoint)
        kept = [b for b in gateway.get("budgets") or [] if b.get("name") != name]
        gateway["budgets"] = [*kept, budget]
        print_json(c.request("PUT", f"{_path(endpoint)}/ai-gateway", json=gateway))


@budgets.command("delete")
def budgets_delete(endpoint: str, name: str) -> None:
    """Remove the budget NAME of ENDPOINT."""
    with client() as c:
        gateway = _gateway(c, endpoint)
        current = gateway.get("budgets") or []
        kept = [b for b in current if b.get("name") != name]
        if len(kept) == len(current):
            raise typer.BadParameter(f"endpoint {endpoint!r} has no budget named {name!r}")
        gateway["budgets"] = kept or None
        c.request("PUT", f"{_path(endpoint)}/ai-gateway", json=gateway)


@budgets.command("price")
def budgets_price(
    endpoint: str,
    served_entity: str,
    input_per_million: Annotated[float, typer.Option(help="Per million input tokens.")],
    output_per_million: Annotated[float, typer.Option(help="Per million output tokens.")],
) -> None:
    """Set what a served entity's tokens cost (for cost budgets)."""
    price = {
        "served_entity_name": served_entity,
        "input_per_million_tokens": input_per_million,
        "output_per_million_tokens": output_per_million,
    }
    with client() as c:
        gateway = _gateway(c, endpoint)
        kept = [
            p for p in gateway.get("pricing") or [] if p.get("served_entity_name") != served_entity
        ]
        gateway["pricing"] = [*kept, price]
        print_json(c.request("PUT", f"{_path(endpoint)}/ai-gateway", json=gateway))
