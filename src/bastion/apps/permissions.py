"""App ACLs in Databricks' permissions shape, stored as grants on the app securable.

``CAN_MANAGE`` > ``CAN_USE``; the owner (creator) has ``CAN_MANAGE``, and so does the
``admins`` group (shown as inherited). Only ``CAN_MANAGE`` may change the list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from bastion.apps.model import AppRecord
from bastion.errors import InvalidRequest
from bastion.governance.privileges import Privilege
from bastion.identity.model import ADMINS_GROUP, Caller, PrincipalKind

if TYPE_CHECKING:
    from bastion.platform import Platform

LEVELS = (Privilege.CAN_USE, Privilege.CAN_MANAGE)
LEVEL_DESCRIPTIONS = {
    Privilege.CAN_USE: "Can open and use the app",
    Privilege.CAN_MANAGE: "Can use, deploy, start, stop, delete the app and set its permissions",
}
_FIELD_OF_KIND = {
    PrincipalKind.USER: "user_name",
    PrincipalKind.GROUP: "group_name",
    PrincipalKind.SERVICE_PRINCIPAL: "service_principal_name",
}


class AccessControlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_name: str | None = Field(default=None, max_length=255)
    group_name: str | None = Field(default=None, max_length=255)
    service_principal_name: str | None = Field(default=None, max_length=255)
    permission_level: str = Field(max_length=64)


class PermissionsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    access_control_list: list[AccessControlRequest] = Field(default_factory=list, max_length=200)


def parse_level(text: str) -> Privilege:
    key = str(text).strip().upper()
    for level in LEVELS:
        if level.value == key:
            return level
    raise InvalidRequest(f"Unknown permission level {text!r}; use CAN_USE or CAN_MANAGE.")


def acl_document(platform: Platform, record: AppRecord, caller: Caller) -> dict[str, Any]:
    snapshot = platform.authorizer.snapshot()
    node = snapshot.nodes.get(record.securable_id)
    levels: dict[int, set[Privilege]] = {}
    for principal_id, held in snapshot.grants.get(record.securable_id, {}).items():
        levels[principal_id] = {p for p in held if p in LEVELS}
    if node is not None:
        levels.setdefault(node.owner_id, set()).add(Privilege.CAN_MANAGE)
    principals = platform.identity_cache.snapshot().principals
    entries: list[dict[str, Any]] = []
    for principal_id, mine in sorted(levels.items()):
        principal = principals.get(principal_id)
        if principal is None or not mine or node is None:
            continue
        if not platform.authorizer.sees_grantee(caller, node, principal.name):
            continue
        top = max(mine, key=LEVELS.index)
        entries.append(
            {
                _FIELD_OF_KIND[principal.kind]: principal.name,
                "display_name": principal.display_name,
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
                    "inherited_from_object": ["/apps/"],
                }
            ],
        }
    )
    return {
        "object_id": f"/apps/{record.name}",
        "object_type": "apps",
        "access_control_list": entries,
    }


def resolve_entries(
    platform: Platform, entries: list[AccessControlRequest]
) -> dict[int, set[Privilege]]:
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
