"""Audit events with the fields of ``system.access.audit``, and the sink they go through."""

from __future__ import annotations

import json
import logging
import queue
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import select

from bastion.metastore.db import Metastore
from bastion.metastore.models import AuditEventRow

logger = logging.getLogger(__name__)

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
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def as_row(self) -> dict[str, Any]:
        """The event in ``system.access.audit``'s shape."""
        return {
            "version": "2.0",
            "event_time": self.event_time,
            "event_id": self.event_id,
            "request_id": self.request_id,
            "user_identity": {"email": self.user_email, "subjectName": self.user_email},
            "service_name": self.service_name,
            "action_name": self.action_name,
            "request_params": self.request_params,
            "response": {"statusCode": self.status_code, "errorMessage": self.error_message},
            "source_ip_address": self.source_ip_address,
            "user_agent": self.user_agent,
            "audit_level": "WORKSPACE_LEVEL",
        }


class AuditSink(Protocol):
    def emit(self, event: AuditEvent) -> None:
        """Accept an event; it must not block the request for I/O."""
        ...

    def flush(self) -> None:
        """Make every event emitted so far durable."""
        ...

    def close(self) -> None: ...


class MetastoreAuditSink:
    """Writes audit events to the metastore in batches, from a background thread."""

    def __init__(self, metastore: Metastore, batch_size: int = 500) -> None:
        self._metastore = metastore
        self._queue: queue.Queue[AuditEvent | None] = queue.Queue()
        self._batch_size = batch_size
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="bastion-audit", daemon=True)
        self._thread.start()

    def emit(self, event: AuditEvent) -> None:
        self._queue.put(event)

    def _drain(self) -> list[AuditEvent]:
        batch: list[AuditEvent] = []
        while len(batch) < self._batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                batch.append(item)
        return batch

    def _write(self, batch: list[AuditEvent]) -> None:
        if not batch:
            return
        with self._metastore.session() as session:
            session.add_all(
                AuditEventRow(
                    event_id=e.event_id,
                    event_time=e.event_time,
                    request_id=e.request_id,
                    user_email=e.user_email,
                    service_name=e.service_name,
                    action_name=e.action_name,
                    request_params=json.dumps(e.request_params),
                    status_code=e.status_code,
                    error_message=e.error_message,
                    source_ip_address=e.source_ip_address,
                    user_agent=e.user_agent,
                )
                for e in batch
            )
            session.commit()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                with self._lock:
                    self._write(self._drain())
                return
            with self._lock:
                try:
                    self._write([first, *self._drain()])
                except Exception:
                    logger.exception("could not write audit events; they will be retried")
                    self._queue.put(first)

    def flush(self) -> None:
        with self._lock:
            self._write(self._drain())

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)
        self.flush()

    def query(
        self,
        *,
        since_ms: int | None = None,
        action_name: str | None = None,
        user_email: str | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        self.flush()
        with self._metastore.session() as session:
            q = select(AuditEventRow)
            if since_ms is not None:
                q = q.where(AuditEventRow.event_time >= since_ms)
            if action_name:
                q = q.where(AuditEventRow.action_name == action_name)
            if user_email:
                q = q.where(AuditEventRow.user_email == user_email)
            rows = session.scalars(q.order_by(AuditEventRow.id.desc()).limit(limit)).all()
        return [
            AuditEvent(
                event_time=r.event_time,
                request_id=r.request_id,
                user_email=r.user_email,
                service_name=r.service_name,
                action_name=r.action_name,
                request_params=json.loads(r.request_params),
                status_code=r.status_code,
                error_message=r.error_message,
                source_ip_address=r.source_ip_address,
                user_agent=r.user_agent,
                event_id=r.event_id,
            )
            for r in rows
        ]
