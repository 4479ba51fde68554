"""Endpoint ACLs in Databricks' permissions shape, stored as grants on the endpoint securable.

``CAN_MANAGE`` > ``CAN_QUERY`` > ``CAN_VIEW``; the owner (creator) has ``CAN_MANAGE``, and so
does the ``admins`` group (shown as inherited, as Databricks does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from bastion.errors import InvalidRequest
from bastion.governance.privileges import Privilege
from bastion.identity.model import ADMINS_GROUP, Caller, PrincipalKind
from bastion.serving.control.store import EndpointRecord

if TYPE_CHECKING:
    from bastion.platform import Platform

LEVELS = (Privilege.CAN_VIEW, Privilege.CAN_QUERY, Privilege.CAN_MANAGE)
LEVEL_DESCRIPTIONS = {
    Privilege.CAN_VIEW: "Can view the endpoint and its configuration",
    Privilege.CAN_QUERY: "Can view and query the endpoint",
    Privilege.CAN_MANAGE: "Can view, query, edit, delete and set permissions on the endpoint",
}
_FIELD_OF_KIND = {
    PrincipalKind.USER: "user_name",
    PrincipalKind.GROUP: "group_name",
    PrincipalKind.SERVICE_PRINCIPAL: "service_principal_name",
}


class AccessControlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_name: str | None = None
    group_name: str | None = None
    service_principal_name: str | None = None
    permission_level: str


class PermissionsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    access_control_list: list[AccessControlRequest] = Field(default_factory=list, max_length=200)


def parse_level(text: str) -> Privilege:
    key = str(text).strip().upper()
    for level in LEVELS:
        if level.value == key:
            return level
    raise InvalidRequest(
        f"Unknown permission level {text!r}; use CAN_VIEW, CAN_QUERY or CAN_MANAGE."
    )


def object_id(record: EndpointRecord) -> str:
    return f"/serving-endpoints/{record.id}"


def acl_document(platform: Platform, record: EndpointRecord, caller: Caller) -> dict[str, Any]:
    """``{object_id, object_type, access_control_list: [...]}`` for the endpoint, with the
    entries ``caller`` may see (everyone's for CAN_MANAGE, else their own and their groups')."""
    snapshot = platform.authorizer.snapshot()
    node = snapshot.nodes.get(record.securable_id)
    owner_id = node.owner_id if node is not None else None
    levels: dict[int, set[Privilege]] = {}
    for principal_id, held in snapshot.grants.get(record.securable_id, {}).items():
        levels[principal_id] = {p for p in held if p in LEVELS}
    principals = platform.identity_cache.snapshot().principals
    entries: list[dict[str, Any]] = []
    if owner_id is not None:
        levels.setdefault(owner_id, set()).add(Privilege.CAN_MANAGE)
    for principal_id, mine in sorted(levels.items()):
        record_ = principals.get(principal_id)
        if record_ is None or not mine:
            continue
        if node is None or not platform.authorizer.sees_grantee(caller, node, record_.name):
            continue
        top = max(mine, key=LEVELS.index)
        entries.append(
            {
                _FIELD_OF_KIND[record_.kind]: record_.name,
                "display_name": record_.display_name,
                "all_permissions": [{"permission_level": top.value, "inherited": False}],
            }
        )
    entries.append(
        {
            "group_name": ADMINS_GROUP,
            "all_permissions": [
                {
                    "permission_level": Privilege.CAN_MANAGE.value,
                    "inherited": True,
                    "inherited_from_object": ["/serving-endpoints/"],
                }
            ],
        }
    )
    return {
        "object_id": object_id(record),
        "object_type": "serving-endpoint",
        "access_control_list": entries,
    }


def resolve_entries(
    platform: Platform, entries: list[AccessControlRequest]
) -> dict[int, set[Privilege]]:
    """Principal id → level, checking each entry names exactly one principal of its kind."""
    out: dict[int, set[Privilege]] = {}
    for entry in entries:
        named = [
            (kind, value)
            for kind, value in (
                (PrincipalKind.USER, entry.user_name),
                (PrincipalKind.GROUP, entry.group_name),
                (PrincipalKind.SERVICE_PRINCIPAL, entry.service_principal_name),
            )
            if value
        ]
        if len(named) != 1:
            raise InvalidRequest(
                "Each access control entry needs exactly one of user_name, group_name or "
                "service_principal_name."
            )
        kind, name = named[0]
        principal = platform.authenticator.principal(name)
        if principal is None or principal.kind != kind:
            raise InvalidRequest(f"{_FIELD_OF_KIND[kind]} {name!r} does not exist.")
        out.setdefault(principal.id, set()).add(parse_level(entry.permission_level))
    return out
