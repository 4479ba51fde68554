"""Governed SQL: Databricks SQL statements checked, rewritten and run on DuckDB.

See ``docs/sql.md``. The one entry point is :class:`QueryEngine`.
"""

from bastion.query.engine import QueryEngine
from bastion.query.result import ResultColumn, StatementResult
from bastion.query.runner import ResourceExhausted, StatementCanceled

__all__ = [
    "QueryEngine",
    "ResourceExhausted",
    "ResultColumn",
    "StatementCanceled",
    "StatementResult",
]
