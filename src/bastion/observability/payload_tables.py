"""Payload tables: the platform-written table of each serving endpoint, bound to it.

An endpoint's payload table (``<catalog>.<schema>.<prefix>_payload``) is created with the
endpoint, owned by the endpoint's owner (as in Databricks), and *bound* to the endpoint: its
catalog entry records the endpoint's id. Rows are only ever written to the table bound to the
endpoint that served them, so:

- a table that a user created first under the predictable name is never adopted — the
  endpoint cannot be created (or reconfigured) onto it;
- ``inference_table_config.table_name_prefix`` cannot point one endpoint's log at another
  endpoint's table;
- a table bound to a deleted endpoint is taken over by a new endpoint only when both have
  the same owner (who could read those rows anyway).
"""

from __future__ import annotations

from typing import Any

from bastion.errors import Conflict, NotFound
from bastion.governance.securables import SecurableType, derived_part
from bastion.governance.store import SecurableInfo
from bastion.metastore.models import ServingEndpointRow
from bastion.platform import Platform
from bastion.tables.columns import parse_column
from bastion.tables.delta import create_table_if_missing
from bastion.tables.storage import reachable
from bastion.tables.system import payload_table

BINDING_KEY = "bastion_binding"
PAYLOAD_PURPOSE = "inference_payload"
PAYLOAD_COMMENT = "Inference payloads of a serving endpoint."
LEGACY_OWNER = "admin"  # payload tables made before binding existed were admin's


def payload_table_name(
    endpoint_name: str, ai_gateway: dict[str, Any] | None, config: dict[str, Any] | None
) -> str:
    """Where an endpoint's requests are logged: ``ai_gateway.inference_table_config`` when
    enabled, else the legacy ``auto_capture_config``, else ``main.default.<endpoint>_payload``
    (the endpoint's name made an SQL identifier: ``my-bot`` → ``my_bot_payload``)."""
    table = (ai_gateway or {}).get("inference_table_config") or {}
    capture = (config or {}).get("auto_capture_config") or {}
    chosen: dict[str, Any] = {}
    if table.get("enabled"):
        chosen = table
    elif capture.get("enabled") and capture.get("catalog_name") and capture.get("schema_name"):
        chosen = capture
    catalog = chosen.get("catalog_name") or "main"
    schema = chosen.get("schema_name") or "default"
    prefix = chosen.get("table_name_prefix") or derived_part(endpoint_name)
    return f"{catalog}.{schema}.{prefix}_payload".lower()


def bound_endpoint(info: SecurableInfo) -> int | None:
    """The id of the endpoint whose payload table ``info`` is, if it is one."""
    binding = info.properties.get(BINDING_KEY)
    if isinstance(binding, dict) and binding.get("purpose") == PAYLOAD_PURPOSE:
        endpoint_id = binding.get("endpoint_id")
        return endpoint_id if isinstance(endpoint_id, int) else None
    return None


def _binding(endpoint_id: int) -> dict[str, Any]:
    return {BINDING_KEY: {"purpose": PAYLOAD_PURPOSE, "endpoint_id": endpoint_id}}


def _endpoint_exists(platform: Platform, endpoint_id: int) -> bool:
    with platform.metastore.session() as session:
        return session.get(ServingEndpointRow, endpoint_id) is not None


def _legacy_platform_table(info: SecurableInfo) -> bool:
    """A payload table the platform created before tables were bound (admin's, ours)."""
    columns = {c.get("name") for c in info.properties.get("columns") or []}
    return (
        info.owner == LEGACY_OWNER
        and info.created_by == LEGACY_OWNER
        and info.comment == PAYLOAD_COMMENT
        and {"request_id", "client_request_id", "scan_id", "requester"} <= columns
    )


def check_payload_table(
    platform: Platform, full_name: str, *, endpoint_id: int | None, owner_id: int
) -> None:
    """Raise :class:`Conflict` unless ``full_name`` is free for (or already bound to) this
    endpoint. ``endpoint_id`` is None for an endpoint about to be created."""
    try:
        info = platform.governance.get(SecurableType.TABLE, full_name)
    except NotFound:
        return
    bound = bound_endpoint(info)
    if bound is not None and bound == endpoint_id:
        return
    if bound is not None and info.owner_id == owner_id and not _endpoint_exists(platform, bound):
        return  # the payload table of a deleted endpoint of the same owner
    if bound is None and _legacy_platform_table(info):
        return
    raise Conflict(
        f"Table '{full_name}' already exists and is not this endpoint's payload table; "
        "choose another 'table_name_prefix' in 'ai_gateway.inference_table_config' "
        "(or have its owner drop it)."
    )


def bind_payload_table(
    platform: Platform, full_name: str, *, endpoint_id: int, owner_id: int, created_by: str
) -> SecurableInfo:
    """Create ``full_name`` as the payload table of endpoint ``endpoint_id`` (owned by
    ``owner_id``), or confirm that it already is; :class:`Conflict` if it belongs elsewhere."""
    check_payload_table(platform, full_name, endpoint_id=endpoint_id, owner_id=owner_id)
    governance = platform.governance
    table = payload_table(full_name)
    storage = platform.table_storage
    uri = storage.location(full_name)
    try:
        info = governance.get(SecurableType.TABLE, full_name)
    except NotFound:
        storage.remove(uri)  # the files of a dropped table of this name: never carried over
        columns = [parse_column({"name": n, "type_text": t}) for n, t in table.columns]
        info = governance.create(
            SecurableType.TABLE,
            full_name,
            owner_id=owner_id,
            created_by=created_by,
            comment=PAYLOAD_COMMENT,
            properties={
                "table_type": "MANAGED",
                "data_source_format": "DELTA",
                "columns": [c.as_dict(i) for i, c in enumerate(columns)],
                "storage_location": uri,
                **_binding(endpoint_id),
            },
        )
    else:
        moved = info.properties.get("storage_location") != uri  # BASTION_TABLE_STORAGE changed
        if bound_endpoint(info) == endpoint_id and not moved:
            # Already this endpoint's table, created when it was bound. The logger checks
            # again after every catalog change, inside requests: no storage round trip here
            # (an object store that is down must not cost a request its payload row).
            return info
        info = governance.update(
            SecurableType.TABLE,
            full_name,
            updated_by=created_by,
            properties={**_binding(endpoint_id), "storage_location": uri},
        )
    storage.prepare(uri)
    with reachable(f"create {full_name}"):
        create_table_if_missing(uri, table.schema, name=full_name, storage_options=storage.options)
    return info


def bound_payload_tables(platform: Platform) -> list[str]:
    """Every payload table bound to an endpoint (live or deleted), by full name."""
    return sorted(
        info.full_name
        for info in platform.governance.list_securables(SecurableType.TABLE)
        if bound_endpoint(info) is not None
    )
