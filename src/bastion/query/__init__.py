"""Governed SQL: Databricks SQL statements checked, rewritten and run on DuckDB.

See ``docs/sql.md``. The one entry point is :class:`QueryEngine`. It is imported on first
use, so that a SQL worker process (``bastion.query.sqlworker``) can import the package
without the engine's dependencies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.errors import ResourceExhausted, StatementCanceled
from bastion.query.result import ResultColumn, StatementResult

if TYPE_CHECKING:
    from bastion.query.engine import QueryEngine


def engine_of(platform: Any) -> QueryEngine:
    """The platform's one query engine (``platform.query``), created on first use: one pool of
    SQL workers per process, shared by the Statement Execution API and in-process callers."""
    engine = getattr(platform, "query", None)
    if engine is None:
        from bastion.query.engine import QueryEngine

        engine = QueryEngine(platform)
        platform.query = engine
    return engine


def __getattr__(name: str) -> Any:
    if name == "QueryEngine":
        from bastion.query.engine import QueryEngine

        return QueryEngine
    raise AttributeError(f"module 'bastion.query' has no attribute {name!r}")


__all__ = [
    "QueryEngine",
    "ResourceExhausted",
    "ResultColumn",
    "StatementCanceled",
    "StatementResult",
    "engine_of",
]
