"""Resources: declaring one grants that permission to the app's service principal, and
``valueFrom`` in ``app.yaml`` reads its value.

Declaring a resource *is* granting, so the declarer passes the same check as a grant through
the permissions APIs: they must be able to manage the grants of that object (``MANAGE``/owner
for Unity Catalog objects, ``CAN_MANAGE`` for endpoints, ``MANAGE`` on a secret scope). A
secret's value reaches the app only through :func:`bastion.secrets.usage.require_secret_use`,
checked against whoever declared it — when declared and again on every start.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from bastion.apps.model import AppRecord, AppResource
from bastion.errors import InvalidRequest, NotFound, PermissionDenied
from bastion.governance.privileges import Privilege, parse_privilege
from bastion.governance.securables import SecurableType, parse_name
from bastion.governance.store import GrantChange
from bastion.identity.model import Caller
from bastion.secrets import SecretPermission, SecretReference, secrets_of
from bastion.secrets.usage import require_secret_use

if TYPE_CHECKING:
    from bastion.platform import Platform

_UC_TYPES = {
    "TABLE": SecurableType.TABLE,
    "VOLUME": SecurableType.VOLUME,
    "FUNCTION": SecurableType.FUNCTION,
}


def _securable(resource: AppResource) -> tuple[SecurableType, str, Privilege] | None:
    if resource.serving_endpoint is not None:
        name = parse_name(SecurableType.SERVING_ENDPOINT, resource.serving_endpoint.name)
        privilege = parse_privilege(
            resource.serving_endpoint.permission, SecurableType.SERVING_ENDPOINT
        )
        return SecurableType.SERVING_ENDPOINT, name, privilege
    if resource.uc_securable is not None:
        kind = _UC_TYPES[resource.uc_securable.securable_type]
        name = parse_name(kind, resource.uc_securable.securable_full_name)
        return kind, name, parse_privilege(resource.uc_securable.permission, kind)
    return None


def check_declarable(
    platform: Platform, declarer: Caller, resources: Iterable[AppResource]
) -> None:
    """Raise unless ``declarer`` may grant every resource to an app."""
    authorizer = platform.authorizer
    for resource in resources:
        target = _securable(resource)
        if target is not None:
            kind, name, _privilege = target
            try:
                node = authorizer.node(kind, name)
            except NotFound:
                raise InvalidRequest(
                    f"Resource {resource.name!r}: {kind.label} '{name}' does not exist."
                ) from None
            if not authorizer.can_manage_grants(declarer, node):
                raise PermissionDenied(
                    f"Resource {resource.name!r}: declaring it grants the app access to "
                    f"{kind.label} '{name}', and {declarer.name} may not manage its grants."
                )
        elif resource.secret is not None:
            reference = SecretReference(resource.secret.scope, resource.secret.key)
            require_secret_use(platform, declarer, reference)
            _require_scope_manager(platform, declarer, resource.secret.scope)


def _require_scope_manager(platform: Platform, declarer: Caller, scope: str) -> None:
    # Granting on a secret scope needs MANAGE on it, as the secret ACL API does.
    try:
        secrets_of(platform).list_acls(declarer, scope)
    except PermissionDenied:
        raise PermissionDenied(
            f"Declaring a secret of scope '{scope}' grants the app access to it, which needs "
            "MANAGE on the scope."
        ) from None


def apply_grants(
    platform: Platform,
    app: AppRecord,
    declarer: Caller,
    old: Iterable[AppResource],
    new: Iterable[AppResource],
) -> None:
    """Grant the new resources to the app's service principal and revoke what was dropped."""
    principal = app.service_principal_id
    if principal is None:
        return
    wanted: dict[tuple[SecurableType, str], set[Privilege]] = {}
    secret_scopes: dict[str, SecretPermission] = {}
    for resource in new:
        target = _securable(resource)
        if target is not None:
            wanted.setdefault(target[:2], set()).add(target[2])
        elif resource.secret is not None:
            level = SecretPermission.parse(resource.secret.permission)
            current = secret_scopes.get(resource.secret.scope)
            if current is None or level.rank > current.rank:
                secret_scopes[resource.secret.scope] = level
    dropped: dict[tuple[SecurableType, str], set[Privilege]] = {}
    dropped_scopes: set[str] = set()
    for resource in old:
        target = _securable(resource)
        if target is not None:
            dropped.setdefault(target[:2], set()).add(target[2])
        elif resource.secret is not None and resource.secret.scope not in secret_scopes:
            dropped_scopes.add(resource.secret.scope)
    governance = platform.governance
    for key in set(wanted) | set(dropped):
        try:
            node = platform.authorizer.node(*key)
        except NotFound:
            continue  # the object is gone, and its grants with it
        add = tuple(wanted.get(key, set()))
        remove = tuple(dropped.get(key, set()) - wanted.get(key, set()))
        if add or remove:
            governance.update_grants(node.id, [GrantChange(principal, add=add, remove=remove)])
    store = secrets_of(platform)
    for scope, level in secret_scopes.items():
        store.put_acl(declarer, scope, principal, level)
    for scope in dropped_scopes:
        try:
            store.delete_acl(declarer, scope, principal)
        except (NotFound, PermissionDenied):
            continue


def resource_values(platform: Platform, app: AppRecord) -> dict[str, str]:
    """Resource name → the value ``valueFrom`` gives: an endpoint's name, a securable's full
    name, a warehouse id, or a secret's value (checked against its declarer now)."""
    values: dict[str, str] = {}
    for resource in app.resources:
        if resource.serving_endpoint is not None:
            values[resource.name] = resource.serving_endpoint.name
        elif resource.uc_securable is not None:
            values[resource.name] = resource.uc_securable.securable_full_name
        elif resource.sql_warehouse is not None:
            values[resource.name] = resource.sql_warehouse.id
        elif resource.secret is not None:
            reference = SecretReference(resource.secret.scope, resource.secret.key)
            declarer = app.resources_set_by
            if declarer is None:
                raise PermissionDenied(f"Secret {reference} has no declarer; declare it again.")
            require_secret_use(platform, declarer, reference)
            values[resource.name] = secrets_of(platform).resolve(reference)
    return values


def resolve_env(
    env: Iterable[dict[str, str]], values: dict[str, str], resources: Iterable[AppResource]
) -> dict[str, str]:
    """``app.yaml``'s env with every ``valueFrom`` replaced by its resource's value."""
    known = {r.name for r in resources}
    out: dict[str, str] = {}
    for entry in env:
        if "value" in entry:
            out[entry["name"]] = entry["value"]
            continue
        source = entry["valueFrom"]
        if source not in known:
            raise InvalidRequest(
                f"app.yaml: env {entry['name']!r} reads resource {source!r}, which the app "
                "does not declare."
            )
        out[entry["name"]] = values[source]
    return out
