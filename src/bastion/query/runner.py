"""Run one governed, rewritten query on a SQL worker and bring its rows back, bounded.

The planner has already authorized every source and rewritten row filters and column masks
into the SQL; here the sources become descriptors a worker can open (:func:`describe`), the
job goes to the :class:`~bastion.query.workers.WorkerPool` under the caller's fair share, and
the result streams back. :func:`run` collects it, stopping at ``max_rows`` (``truncated``)
and at the byte caps: past the caller's ``byte_limit`` the result is truncated, past the
engine's ``max_bytes`` (the INLINE cap) the statement fails. :func:`stream` hands the batches
on one by one, for INSERT and CREATE TABLE AS, which write them to Delta as they come.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa

from bastion.errors import InvalidRequest, ResourceExhausted
from bastion.query.catalog import DeltaSource
from bastion.query.protocol import ArrowData, DeltaSnapshot, Job, ParquetFiles, Source, table_ipc
from bastion.query.results import QueryFailed, ResultStream
from bastion.query.workers import WorkerPool

NATIVE_SCAN_BYTES = 4 * 1024 * 1024
_INTERNAL = re.compile(r"\b__(?:t|cte)\d+\b")


@dataclass(frozen=True)
class Limits:
    """What bounds one statement's executions (all its queries share the deadline)."""

    pool: WorkerPool
    principal: int
    deadline: float  # time.monotonic() by which the statement must be done
    timeout_s: float
    native_scan_bytes: int = NATIVE_SCAN_BYTES
    max_bytes: int | None = None  # a result larger than this fails (the INLINE cap)
    byte_limit: int | None = None  # a result larger than this is truncated (the caller's)

    def unbounded(self) -> Limits:
        """The same limits without byte caps, for results that stream to a table."""
        return replace(self, max_bytes=None, byte_limit=None)

    @property
    def budget(self) -> int | None:
        caps = [c for c in (self.max_bytes, self.byte_limit) if c is not None]
        return min(caps) if caps else None


def describe(sources: Mapping[str, Any]) -> dict[str, Source]:
    """The plan's authorized sources as descriptors a worker can open, and nothing more."""
    out: dict[str, Source] = {}
    for name, data in sources.items():
        if isinstance(data, DeltaSource) and data.files is not None:
            out[name] = ParquetFiles(
                data.files, data.schema.serialize().to_pybytes(), data.size_bytes
            )
        elif isinstance(data, DeltaSource):
            if data.location is None or data.version is None:
                raise InvalidRequest("A table's snapshot cannot be read here.")
            out[name] = DeltaSnapshot(data.location, data.version)
        elif isinstance(data, pa.Table):
            out[name] = ArrowData(table_ipc(data))
        else:  # pragma: no cover - the planner registers only the kinds above
            raise TypeError(f"cannot send a {type(data).__name__} to a SQL worker")
    return out


@contextmanager
def stream(
    sql: str,
    sources: Mapping[str, Any],
    parameters: Mapping[str, Any],
    limits: Limits,
    *,
    max_rows: int | None,
    cancel: threading.Event | None = None,
    public_names: Mapping[str, str] | None = None,
) -> Iterator[ResultStream]:
    """The result of ``sql`` as a stream of batches (leaving the block early stops it)."""
    job = Job(
        job_id=0,
        sql=sql,
        parameters=dict(parameters),
        sources=describe(sources),
        max_rows=max_rows,
        max_bytes=limits.budget,
        native_scan_bytes=limits.native_scan_bytes,
    )
    try:
        with limits.pool.stream(
            job,
            principal=limits.principal,
            deadline=limits.deadline,
            timeout_s=limits.timeout_s,
            cancel=cancel,
        ) as result:
            yield result
    except QueryFailed as error:
        raise InvalidRequest(_public_message(error.message, public_names or {})) from None


def run(
    sql: str,
    sources: Mapping[str, Any],
    parameters: Mapping[str, Any],
    limits: Limits,
    *,
    max_rows: int | None,
    cancel: threading.Event | None = None,
    public_names: Mapping[str, str] | None = None,
) -> tuple[pa.Table, bool]:
    """Rows of ``sql`` (at most ``max_rows``; ``None``: all) and whether more were cut off.

    Raises ``ResourceExhausted`` when the result is larger than ``limits.max_bytes``, unless
    the caller's smaller ``byte_limit`` truncated it first.
    """
    with stream(
        sql,
        sources,
        parameters,
        limits,
        max_rows=max_rows,
        cancel=cancel,
        public_names=public_names,
    ) as result:
        table = pa.Table.from_batches(list(result), schema=result.schema)
    if result.exceeded:
        caller_cut = limits.byte_limit is not None and (
            limits.max_bytes is None or limits.byte_limit <= limits.max_bytes
        )
        if not caller_cut:
            raise ResourceExhausted(
                f"The result is larger than {_size(limits.max_bytes or 0)}, the most a statement "
                "may return inline; add a LIMIT or aggregate, or set byte_limit to receive "
                "the first part of it (truncated)."
            )
    return table, result.truncated or result.exceeded


def _size(count: int) -> str:
    if count >= 1024 * 1024 and count % (1024 * 1024) == 0:
        return f"{count // (1024 * 1024)} MiB"
    return f"{count:,} bytes"


def _public_message(message: str, public_names: Mapping[str, str]) -> str:
    """DuckDB's message with internal source names replaced by catalog names."""

    def public(match: re.Match[str]) -> str:
        return public_names.get(match.group(0), "subquery")

    return _INTERNAL.sub(public, message.split("\n\nLINE")[0]).strip()
