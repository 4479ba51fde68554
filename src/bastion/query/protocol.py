"""What the server and a SQL worker process say to each other.

Server → worker: a pickled :class:`WorkerConfig` once, then one pickled :class:`Job` per
statement (the server is the trusted side). Worker → server: *frames*, one byte of kind and a
payload — an Arrow IPC message (the schema, each record batch) or a small JSON object (ready,
end, error). The server never unpickles anything a worker sends, so a worker that a statement
managed to subvert cannot make the server run code by what it sends back; and it reads every
frame with a length cap, so it cannot make the server allocate without bound either.

This module is imported by the worker: it depends on the standard library and pyarrow only.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

ACK = b"A"  # payload: JSON {"job"}: the worker received the job and starts it
SCHEMA = b"S"  # payload: the result's schema (Arrow IPC)
BATCH = b"B"  # payload: one record batch (Arrow IPC)
END = b"E"  # payload: JSON {"rows", "bytes", "truncated", "exceeded", "vm"}
ERROR = b"X"  # payload: JSON {"kind", "message", "vm"}
READY = b"R"  # payload: JSON {"vm", "pid"}; or ERROR when the worker cannot start

# Error kinds a worker reports.
OOM = "oom"  # out of memory: DuckDB's limit, the address-space limit, or a MemoryError
INTERRUPTED = "interrupted"  # the server asked it to stop
INVALID = "invalid"  # DuckDB refused the statement (binder, parser, conversion errors...)
TOO_LARGE = "too_large"  # one row is larger than a frame may be
UNAVAILABLE = "unavailable"  # the table storage (an object store) could not be read now
UNAVAILABLE = "unavailable"  # an object store holding a table could not be read now
INTERNAL = "internal"  # anything else: a bug

INTERRUPT = struct.Struct("<q")
"""On the control pipe: the id of the job to interrupt."""

MAX_FRAME_BYTES = 64 * 1024 * 1024
"""The largest batch frame a worker sends; bigger batches are split by rows."""


@dataclass(frozen=True)
class ParquetFiles:
    """A native Delta snapshot: exactly its authorized data files, and the table's schema."""

    files: tuple[str, ...]
    schema: bytes  # pa.Schema, IPC-serialized
    size_bytes: int


@dataclass(frozen=True)
class DeltaSnapshot:
    """A Delta table the worker opens itself at a fixed, already authorized version.

    Used for the snapshots DuckDB cannot scan natively (partitioned tables, reader
    features, object stores): the worker reads them as ``deltalake``'s Arrow dataset, an
    object store's with the ``storage_options`` of its :class:`WorkerConfig`.
    """

    location: str
    version: int


@dataclass(frozen=True)
class ArrowData:
    """Rows computed by the server (``information_schema`` views), as an Arrow IPC stream."""

    ipc: bytes


Source = ParquetFiles | DeltaSnapshot | ArrowData


@dataclass(frozen=True)
class WorkerConfig:
    memory_limit_mb: int
    threads: int
    address_space_mb: int
    storage_options: dict[str, str] = field(default_factory=dict, repr=False)
    """How to reach tables on an object store (``DeltaSnapshot`` locations): credentials."""


@dataclass(frozen=True)
class Job:
    """One statement's execution: SQL already governed and rewritten by the server."""

    job_id: int
    sql: str
    parameters: dict[str, Any]
    sources: dict[str, Source]
    max_rows: int | None
    max_bytes: int | None  # stop (with ``exceeded``) before sending more than this
    native_scan_bytes: int
    batch_rows: int = 2048


def frame(tag: bytes, payload: bytes | pa.Buffer) -> bytes:
    return tag + memoryview(payload)


def control(tag: bytes, **values: Any) -> bytes:
    return tag + json.dumps(values).encode()


def schema_bytes(schema: pa.Schema) -> bytes:
    return schema.serialize().to_pybytes()


def read_schema(data: bytes | memoryview) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(data))


def table_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
