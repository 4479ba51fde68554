"""Inference logging: one payload row per request, plus usage and served-entity rows.

Rows go to the durable writer (an ``os.write`` to its log; Delta commits happen in the
background), so logging costs the request microseconds and loses nothing on a crash. Rows go
only to the payload table bound to the endpoint that served them (see
:mod:`bastion.observability.payload_tables`).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

import orjson

from bastion.errors import BastionError, Conflict
from bastion.governance.securables import SecurableType
from bastion.observability.exchange import Exchange
from bastion.observability.payload_tables import (
    bind_payload_table,
    bound_payload_tables,
    payload_table_name,
)
from bastion.platform import Platform
from bastion.tables.system import ENDPOINT_USAGE, SERVED_ENTITIES, payload_table

logger = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 1024 * 1024


def _capped(data: str | None, code: str, errors: list[str]) -> str | None:
    if data is not None and len(data) > MAX_PAYLOAD_BYTES:
        errors.append(code)
        return None
    return data


class InferenceLogger:
    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self._writer = platform.writer
        # endpoint -> (payload table, endpoint id, metastore generation it was checked at)
        self._bound: dict[str, tuple[str, int, int]] = {}
        self._entities: set[str] = set()
        self._lock = threading.Lock()
        for table in (ENDPOINT_USAGE, SERVED_ENTITIES):
            self._writer.register(table.spec(platform.table_storage))
        self._replay_payload_logs()

    def _replay_payload_logs(self) -> None:
        """Replay rows an earlier process left in the log, into tables still bound to an
        endpoint. Rows of a table that is no longer a payload table stay in the log."""
        tables = self._writer.wal_dir / "tables"
        if not tables.exists():
            return
        bound = set(bound_payload_tables(self._platform))
        for directory in sorted(tables.glob("*_payload")):
            if not any(directory.iterdir()):
                continue
            if directory.name in bound:
                spec = payload_table(directory.name).spec(self._platform.table_storage)
                self._writer.register(spec)
            else:
                logger.warning(
                    "rows for %s stay in the write-ahead log: no endpoint's payload table "
                    "has that name now",
                    directory.name,
                )

    def _payload_table(self, endpoint: str, plan: Any) -> str | None:
        """The table bound to the endpoint that served this request (created if missing);
        checked again whenever the catalog changes. None: the name belongs to another table."""
        generation = self._platform.metastore.generation
        endpoint_id = int(getattr(plan, "endpoint_id", 0))
        cached = self._bound.get(endpoint)
        if cached is not None and cached[1:] == (endpoint_id, generation):
            return cached[0]
        with self._lock:
            name = str(getattr(plan, "payload_table", "") or payload_table_name(endpoint, {}, {}))
            node = self._platform.authorizer.snapshot().by_name.get(
                (SecurableType.SERVING_ENDPOINT, endpoint)
            )
            if node is None:
                return None  # deleted while the request ran
            owner = self._platform.identity_cache.snapshot().principals.get(node.owner_id)
            try:
                bind_payload_table(
                    self._platform,
                    name,
                    endpoint_id=endpoint_id,
                    owner_id=node.owner_id,
                    created_by=owner.name if owner else "bastion",
                )
            except Conflict as exc:
                logger.error("not logging requests of endpoint %s: %s", endpoint, exc.message)
                return None
            self._writer.register(payload_table(name).spec(self._platform.table_storage))
            self._bound[endpoint] = (name, endpoint_id, self._platform.metastore.generation)
        return name

    def log(self, exchange: Exchange) -> None:
        try:
            self._log(exchange)
        except BastionError:
            logger.exception("could not log request %s", exchange.request_id)

    def _log(self, exchange: Exchange) -> None:
        plan, entity, chat = exchange.plan, exchange.entity, exchange.request
        if plan is None or exchange.endpoint is None:
            return
        scan_type = exchange.scan_type
        when = datetime.fromtimestamp(exchange.started_wall, UTC)
        errors: list[str] = list(chat.notes) if chat is not None else []
        request_text = _capped(
            exchange.raw_body.decode("utf-8", errors="replace"), "MAX_REQUEST_SIZE_EXCEEDED", errors
        )
        response_text = (
            orjson.dumps(exchange.response).decode() if exchange.response is not None else None
        )
        response_text = _capped(response_text, "MAX_RESPONSE_SIZE_EXCEEDED", errors)
        if exchange.error and exchange.response is None:
            response_text = orjson.dumps({"error": exchange.error}).decode()
        usage_context = {
            str(k): str(v) for k, v in ((chat.usage_context if chat else None) or {}).items()
        }
        client_request_id = chat.client_request_id if chat else None
        entity_id = getattr(entity, "served_entity_id", None)
        table = self._payload_table(exchange.endpoint, plan)
        requester = exchange.caller.name if exchange.caller else None
        if table is not None:
            self._writer.append(
                table,
                {
                    "request_id": exchange.request_id,
                    "client_request_id": client_request_id,
                    "request_date": when.date(),
                    "request_time": when,
                    "status_code": exchange.status,
                    "sampling_fraction": 1.0,
                    "execution_duration_ms": int(exchange.upstream_s * 1000),
                    "total_duration_ms": int(exchange.total_ms),
                    "request": request_text,
                    "response": response_text,
                    "logging_error_codes": errors,
                    "served_entity_id": entity_id,
                    "served_entity_name": getattr(entity, "served_entity_name", None),
                    "model_name": getattr(entity, "model_name", None),
                    "model_version": getattr(entity, "model_version", None),
                    "endpoint_name": exchange.endpoint,
                    "requester": requester,
                    "api": exchange.api.value,
                    "stream": bool(chat.stream) if chat else False,
                    "input_tokens": exchange.input_tokens,
                    "output_tokens": exchange.output_tokens,
                    "environment": (getattr(plan, "tags", None) or {}).get("environment"),
                    "scan_type": scan_type,
                    "scan_id": exchange.scan_id,
                    "trace_id": exchange.trace_id,
                    "usage_context": usage_context,
                    "tags": dict(getattr(plan, "tags", None) or {}),
                },
            )
        self._writer.append(
            ENDPOINT_USAGE.full_name,
            {
                "account_id": "bastion",
                "workspace_id": "0",
                "client_request_id": client_request_id,
                "databricks_request_id": exchange.request_id,
                "requester": requester,
                "status_code": exchange.status,
                "request_time": when,
                "input_token_count": exchange.input_tokens,
                "output_token_count": exchange.output_tokens,
                "input_character_count": len(exchange.raw_body),
                "output_character_count": len(response_text or ""),
                "usage_context": usage_context,
                "request_streaming": bool(chat.stream) if chat else False,
                "served_entity_id": entity_id,
                "endpoint_name": exchange.endpoint,
                "api": exchange.api.value,
                "total_duration_ms": int(exchange.total_ms),
                "scan_type": scan_type,
            },
        )
        if entity_id and entity_id not in self._entities:
            self._entities.add(entity_id)
            self._writer.append(
                SERVED_ENTITIES.full_name,
                {
                    "served_entity_id": entity_id,
                    "account_id": "bastion",
                    "workspace_id": "0",
                    "endpoint_name": exchange.endpoint,
                    "served_entity_name": getattr(entity, "served_entity_name", None),
                    "entity_type": getattr(entity, "kind", None),
                    "entity_name": getattr(entity, "entity_name", None),
                    "entity_version": getattr(entity, "model_version", None),
                    "endpoint_config_version": getattr(plan, "config_version", None),
                    "change_time": when,
                },
            )


__all__ = ["InferenceLogger", "payload_table_name"]
