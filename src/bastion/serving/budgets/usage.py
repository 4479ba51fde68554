"""A subject's spend before its counter existed, read from the usage table.

``system.serving.endpoint_usage`` has one row per request (requester, tokens, served entity
id); ``system.serving.served_entities`` maps the id to the served entity's name, whose price
``ai_gateway.pricing`` gives. Both are Delta tables written by every replica's durable
writer, so this is the same spend the counters count — read once per counter, never per
request.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from bastion.serving.budgets.policy import Budget, Budgets
from bastion.tables import delta
from bastion.tables.system import ENDPOINT_USAGE, SERVED_ENTITIES

if TYPE_CHECKING:
    from bastion.platform import Platform

_TIME = pa.timestamp("us", tz="UTC")


def requesters(platform: Platform, subject: str) -> frozenset[str] | None:
    """The requester names a counter's subject covers; None: everyone (the endpoint)."""
    kind, _, name = subject.partition(":")
    if kind == "group":
        snap = platform.identity_cache.snapshot()
        group = snap.by_name.get(name)
        if group is None:
            return frozenset()
        return frozenset(
            record.name
            for pid, record in snap.principals.items()
            if group.id in snap.group_closure.get(pid, frozenset())
        )
    if kind == "user":
        snap = platform.identity_cache.snapshot()
        return frozenset(n for n in snap.by_name if n.casefold() == name) or frozenset({name})
    if kind == "sp":
        return frozenset({name})
    return None


def _entity_names(platform: Platform, endpoint: str) -> dict[str, str]:
    spec = SERVED_ENTITIES.spec(platform.table_storage)
    try:
        dataset = delta.read_dataset(spec.uri, storage_options=spec.storage_options)
    except Exception:  # no table yet: no usage yet
        return {}
    table = dataset.to_table(
        columns=["served_entity_id", "served_entity_name"],
        filter=ds.field("endpoint_name") == endpoint,
    )
    return dict(
        zip(
            table.column("served_entity_id").to_pylist(),
            table.column("served_entity_name").to_pylist(),
            strict=True,
        )
    )


def usage_spend(
    platform: Platform,
    endpoint: str,
    budgets: Budgets,
    budget: Budget,
    subjects: Iterable[tuple[str, datetime]],
    start: datetime,
) -> dict[str, float]:
    """Spend per subject from ``start`` until each subject's own instant, from the usage
    table (rows already committed to Delta)."""
    wanted = list(subjects)
    if not wanted:
        return {}
    until = max(instant for _, instant in wanted)
    spec = ENDPOINT_USAGE.spec(platform.table_storage)
    try:
        dataset = delta.read_dataset(spec.uri, storage_options=spec.storage_options)
    except Exception:
        return dict.fromkeys((subject for subject, _ in wanted), 0.0)
    table = dataset.to_table(
        columns=[
            "requester",
            "request_time",
            "input_token_count",
            "output_token_count",
            "served_entity_id",
        ],
        filter=(ds.field("endpoint_name") == endpoint)
        & (ds.field("request_time") >= pa.scalar(start, _TIME))
        & (ds.field("request_time") < pa.scalar(until, _TIME)),
    )
    names = _entity_names(platform, endpoint) if budget.unit == "cost" else {}
    out: dict[str, float] = {}
    for subject, instant in wanted:
        covered = requesters(platform, subject)
        rows = table.filter(pc.less(table.column("request_time"), pa.scalar(instant, _TIME)))
        if covered is not None:
            rows = rows.filter(pc.is_in(rows.column("requester"), pa.array(sorted(covered))))
        total = 0.0
        for input_tokens, output_tokens, entity in zip(
            rows.column("input_token_count").to_pylist(),
            rows.column("output_token_count").to_pylist(),
            rows.column("served_entity_id").to_pylist(),
            strict=True,
        ):
            total += budgets.amount(
                budget, names.get(entity), input_tokens or 0, output_tokens or 0
            )
        out[subject] = total
    return out
