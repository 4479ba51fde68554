"""What the handlers of one statement share: who runs it, with which limits."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from sqlglot import exp

from bastion.identity.model import Caller
from bastion.platform import Platform
from bastion.query import params, runner
from bastion.query.catalog import CatalogCache
from bastion.query.planner import Plan, Planner
from bastion.query.results import ResultStream


@dataclass
class Context:
    platform: Platform
    catalog: CatalogCache
    caller: Caller
    parameters: dict[str, Any]
    limits: runner.Limits
    cancel: threading.Event | None
    statement_type: str = "UNKNOWN"
    tables_read: tuple[str, ...] = ()

    def plan(self, tree: exp.Expr) -> Plan:
        plan = Planner(self.platform, self.catalog, self.caller).plan_query(tree)
        self.tables_read += tuple(plan.tables_read)
        return plan

    def run(
        self, plan: Plan, *, max_rows: int | None, sql: str | None = None
    ) -> tuple[pa.Table, bool]:
        """Execute a plan on a SQL worker; ``max_rows=None`` keeps every row.

        The result is bounded by the statement's byte caps (see ``runner.run``).
        """
        return runner.run(
            sql or plan.sql(),
            plan.sources,
            params.bind(self.parameters, plan.parameters),
            self.limits,
            max_rows=max_rows,
            cancel=self.cancel,
            public_names=plan.public_names,
        )

    def query(self, tree: exp.Expr, *, max_rows: int | None) -> tuple[pa.Table, bool]:
        return self.run(self.plan(tree), max_rows=max_rows)

    @contextmanager
    def stream(self, tree: exp.Expr) -> Iterator[ResultStream]:
        """Every row of a query, batch by batch as the worker sends them (no byte cap: the
        consumer writes them on; the deadline still applies)."""
        plan = self.plan(tree)
        with runner.stream(
            plan.sql(),
            plan.sources,
            params.bind(self.parameters, plan.parameters),
            self.limits.unbounded(),
            max_rows=None,
            cancel=self.cancel,
            public_names=plan.public_names,
        ) as result:
            yield result
