"""An endpoint's payload table follows the endpoint: created and bound with it, checked before
any change of where it logs, so that no request is ever logged into someone else's table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.governance.securables import SecurableType
from bastion.observability.payload_tables import (
    bind_payload_table,
    check_payload_table,
    payload_table_name,
)
from bastion.serving.control.store import EndpointRecord

if TYPE_CHECKING:
    from bastion.platform import Platform


def check_payload_target(
    platform: Platform,
    endpoint_name: str,
    ai_gateway: dict[str, Any],
    config: dict[str, Any],
    *,
    endpoint_id: int | None,
    owner_id: int,
) -> str:
    """The payload table this configuration logs to; :class:`Conflict` if it is taken."""
    name = payload_table_name(endpoint_name, ai_gateway, config)
    check_payload_table(platform, name, endpoint_id=endpoint_id, owner_id=owner_id)
    return name


def bind_endpoint_payload(platform: Platform, record: EndpointRecord) -> str:
    """Create (or confirm) the endpoint's payload table, owned by the endpoint's owner."""
    node = platform.authorizer.node(SecurableType.SERVING_ENDPOINT, record.name)
    owner = platform.identity_cache.snapshot().principals.get(node.owner_id)
    name = payload_table_name(record.name, record.ai_gateway, record.config)
    bind_payload_table(
        platform,
        name,
        endpoint_id=record.id,
        owner_id=node.owner_id,
        created_by=owner.name if owner else record.creator,
    )
    return name


def endpoint_owner(platform: Platform, record: EndpointRecord) -> int:
    return platform.authorizer.node(SecurableType.SERVING_ENDPOINT, record.name).owner_id
