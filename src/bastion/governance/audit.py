"""Audit events with the fields of ``system.access.audit``, and the sink they go through."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from bastion.tables.delta import open_table
from bastion.tables.storage import TableStorage, reachable
from bastion.tables.system import AUDIT
from bastion.tables.writer import DurableWriter

# Never written to an audit row, whatever the request carried.
SECRET_KEYS = frozenset(
    {
        "password",
        "token",
        "token_value",
        "access_token",
        "refresh_token",
        "client_secret",
        "secret",
        "api_key",
        "authorization",
        "value",
    }
)


def redact(params: Mapping[str, Any]) -> dict[str, str]:
    """Stringify request parameters for ``request_params``, dropping anything secret."""
    out: dict[str, str] = {}
    for key, value in params.items():
        if key.lower() in SECRET_KEYS or "password" in key.lower() or "secret" in key.lower():
            out[key] = "[REDACTED]"
        elif isinstance(value, str):
            out[key] = value[:1000]
        else:
            out[key] = json.dumps(value, default=str)[:1000]
    return out


@dataclass(frozen=True)
class AuditEvent:
    event_time: int
    request_id: str
    user_email: str | None
    service_name: str
    action_name: str
    request_params: dict[str, str]
    status_code: int
    error_message: str | None = None
    source_ip_address: str | None = None
    user_agent: str | None = None
    # 128 random bits as 32 hex digits (uuid4().hex costs five times as much: one per request).
    event_id: str = field(default_factory=lambda: os.urandom(16).hex())
    #: The app the user acted through (a forwarded on-behalf-of token), if any.
    acting_app: str | None = None

    def as_row(self) -> dict[str, Any]:
        """The event in ``system.access.audit``'s shape."""
        when = _ts(self.event_time)
        return {
            "account_id": "bastion",
            "workspace_id": "0",
            "version": "2.0",
            "event_time": when,
            "event_date": when.date(),
            "session_id": None,
            "event_id": self.event_id,
            "request_id": self.request_id,
            "user_identity": {"email": self.user_email, "subjectName": self.user_email},
            "service_name": self.service_name,
            "action_name": self.action_name,
            "request_params": (
                {**self.request_params, "acting_app": self.acting_app}
                if self.acting_app
                else self.request_params
            ),
            "response": {
                "statusCode": self.status_code,
                "errorMessage": self.error_message,
                "result": None,
            },
            "source_ip_address": self.source_ip_address,
            "user_agent": self.user_agent,
            "audit_level": "WORKSPACE_LEVEL",
            # Databricks' shape: run_as is whose rights applied; run_by, who ran it (an app
            # acting for its user is named as app:<name>).
            "identity_metadata": {
                "run_by": f"app:{self.acting_app}" if self.acting_app else self.user_email,
                "run_as": self.user_email,
            },
        }


class AuditSink(Protocol):
    def emit(self, event: AuditEvent) -> None:
        """Accept an event; it must not block the request for I/O."""
        ...

    def flush(self) -> None:
        """Make every event emitted so far durable."""
        ...

    def close(self) -> None: ...


class DeltaAuditSink:
    """Audit events into the Delta table ``system.access.audit``, through the durable writer.

    ``emit`` only appends to the writer's write-ahead log, so it never waits on Delta.
    """

    def __init__(self, writer: DurableWriter, storage: TableStorage) -> None:
        self._writer = writer
        self._storage = storage
        self._uri = storage.location(AUDIT.full_name)
        writer.register(AUDIT.spec(storage))

    def emit(self, event: AuditEvent) -> None:
        self._writer.append(AUDIT.full_name, event.as_row())

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        """The writer is closed (and flushed) by its owner."""

    def query(
        self,
        *,
        since_ms: int | None = None,
        action_name: str | None = None,
        user_email: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Newest events first, in ``system.access.audit``'s row shape (for admins)."""
        self.flush()
        condition = None
        for clause in (
            pc.field("event_time") >= pa.scalar(_ts(since_ms), pa.timestamp("us", tz="UTC"))
            if since_ms is not None
            else None,
            pc.field("action_name") == action_name if action_name else None,
            pc.field("user_identity", "email") == user_email if user_email else None,
        ):
            if clause is not None:
                condition = clause if condition is None else condition & clause
        with reachable("read the audit log"):
            table = open_table(self._uri, storage_options=self._storage.options)
            if table is None:
                return []
            rows = table.to_pyarrow_dataset().to_table(filter=condition)
        rows = rows.sort_by([("event_time", "descending")]).slice(0, limit)
        out = rows.to_pylist()
        for row in out:
            row["request_params"] = dict(row["request_params"] or [])
            row["event_time"] = row["event_time"].isoformat()
            row["event_date"] = row["event_date"].isoformat()
        return out


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
