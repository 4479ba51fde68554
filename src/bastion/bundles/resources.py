"""One handler per resource type: how to find it on the server, what decides that it changed,
and how to create, update and delete it — each a few calls of Bastion's REST API.

A handler's ``facets`` are fingerprints of the declared configuration, kept in the deployment
state; a facet whose fingerprint differs from the state's is what an update changes. Grants
and ACLs are also compared with the server, so what someone removed by hand comes back.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from bastion.bundles.fingerprint import of_path, of_value
from bastion.bundles.model import (
    AppBundleResource,
    CatalogResource,
    EndpointResource,
    FunctionResource,
    Grant,
    GrantResource,
    Permission,
    RedTeamScanResource,
    RegisteredModelResource,
    SchemaResource,
    SecretScopeResource,
    ViewResource,
)
from bastion.client.apps import app_path, upload_source, wait_for_deployment, wait_while_deploying
from bastion.errors import BastionError, Conflict, InvalidRequest, NotFound, PermissionDenied

if TYPE_CHECKING:
    from bastion.client.http import BastionClient

Op = Literal["create", "update", "delete", "run"]
Entry = dict[str, Any]


@dataclass
class Action:
    """One step of a plan."""

    kind: str
    key: str
    op: Op
    name: str
    changes: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{self.kind}.{self.key}"


@dataclass
class Context:
    client: BastionClient
    root: Path
    user_name: str
    say: Callable[[str], None] = lambda _text: None
    #: The bundle's CAN_MANAGE principals: they get MANAGE (CAN_MANAGE) on what it creates.
    managers: list[str] = field(default_factory=list)
    #: model full name → {bundle version index (1-based): server version}, filled as models
    #: are applied, so that aliases and endpoints can name the bundle's versions.
    versions: dict[str, dict[int, int]] = field(default_factory=dict)


def _q(name: str) -> str:
    return quote(name, safe="")


def _get(c: BastionClient, path: str) -> dict[str, Any] | None:
    try:
        return dict(c.request("GET", path))
    except NotFound:
        return None


def _sql(c: BastionClient, statement: str) -> None:
    c.statement(statement)


def quoted(full_name: str) -> str:
    return ".".join("`" + p.replace("`", "``") + "`" for p in full_name.split("."))


# -- grants, shared by every securable that has them -------------------------------------------


def _grant_facet(grants: list[Grant]) -> dict[str, list[str]]:
    out: dict[str, set[str]] = {}
    for grant in grants:
        out.setdefault(grant.principal, set()).update(
            "_".join(p.strip().upper().split()) for p in grant.privileges
        )
    return {k: sorted(v) for k, v in sorted(out.items())}


def _with_managers(ctx: Context, grants: list[Grant]) -> list[Grant]:
    return [*grants, *(Grant(principal=m, privileges=["MANAGE"]) for m in ctx.managers)]


def _current_grants(c: BastionClient, kind: str, full_name: str) -> dict[str, set[str]]:
    rows = c.get_permissions(kind, full_name)
    return {r["principal"]: set(r.get("privileges") or []) for r in rows}


def _apply_grants(
    c: BastionClient, kind: str, full_name: str, wanted: dict[str, list[str]], entry: Entry
) -> None:
    """Grant what is declared and missing; revoke what the bundle granted and no longer
    declares. Privileges someone else granted are never revoked."""
    current = _current_grants(c, kind, full_name)
    granted: dict[str, list[str]] = dict(entry.get("granted") or {})
    for principal, privileges in wanted.items():
        missing = [p for p in privileges if p not in current.get(principal, set())]
        if missing:
            c.update_permissions(kind, full_name, principal, add=missing)
            granted[principal] = sorted(set(granted.get(principal, [])) | set(missing))
    for principal, privileges in list(granted.items()):
        stale = [p for p in privileges if p not in wanted.get(principal, [])]
        if stale:
            c.update_permissions(kind, full_name, principal, remove=stale)
            kept = [p for p in privileges if p not in stale]
            if kept:
                granted[principal] = kept
            else:
                granted.pop(principal)
    entry["granted"] = granted


def _grants_drifted(
    c: BastionClient, kind: str, full_name: str, wanted: dict[str, list[str]]
) -> bool:
    current = _current_grants(c, kind, full_name)
    return any(not set(p) <= current.get(who, set()) for who, p in wanted.items())


# -- the handlers ------------------------------------------------------------------------------


class Handler:
    kind = ""
    order = 0
    #: The REST securable type for grants (None: the type has none).
    securable: str | None = None

    def name(self, resource: Any) -> str:
        return str(resource.name)

    def read(self, ctx: Context, name: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def facets(self, ctx: Context, resource: Any) -> dict[str, Any]:
        return {}

    def drifted(self, ctx: Context, resource: Any, current: dict[str, Any]) -> list[str]:
        """Facets the server no longer matches although the state says they were applied."""
        if self.securable and getattr(resource, "grants", None):
            wanted = _grant_facet(_with_managers(ctx, resource.grants))
            if _grants_drifted(ctx.client, self.securable, self.name(resource), wanted):
                return ["grants"]
        return []

    def create(self, ctx: Context, resource: Any, entry: Entry) -> None:
        raise NotImplementedError

    def update(self, ctx: Context, resource: Any, changes: list[str], entry: Entry) -> None:
        if "grants" in changes:
            self.grants(ctx, resource, entry)

    def grants(self, ctx: Context, resource: Any, entry: Entry) -> None:
        if self.securable:
            wanted = _grant_facet(_with_managers(ctx, getattr(resource, "grants", []) or []))
            _apply_grants(ctx.client, self.securable, self.name(resource), wanted, entry)

    def delete(self, ctx: Context, entry: Entry) -> None:
        raise NotImplementedError


class Catalogs(Handler):
    kind, order, securable = "catalogs", 10, "catalog"

    def read(self, ctx: Context, name: str) -> dict[str, Any] | None:
        return _get(ctx.client, f"/api/2.1/unity-catalog/catalogs/{_q(name)}")

    def facets(self, ctx: Context, resource: CatalogResource) -> dict[str, Any]:
        return {
            "comment": of_value(resource.comment),
            "grants": of_value(_grant_facet(_with_managers(ctx, resource.grants))),
        }

    def create(self, ctx: Context, resource: CatalogResource, entry: Entry) -> None:
        ctx.client.create_catalog(resource.name, resource.comment)
        self.grants(ctx, resource, entry)

    def update(
        self, ctx: Context, resource: CatalogResource, changes: list[str], entry: Entry
    ) -> None:
        if "comment" in changes:
            ctx.client.request(
                "PATCH",
                f"/api/2.1/unity-catalog/catalogs/{_q(resource.name)}",
                json={"comment": resource.comment or ""},
            )
        super().update(ctx, resource, changes, entry)

    def delete(self, ctx: Context, entry: Entry) -> None:
        ctx.client.delete_catalog(entry["name"])


class Schemas(Handler):
    kind, order, securable = "schemas", 20, "schema"

    def name(self, resource: SchemaResource) -> str:
        return f"{resource.catalog_name}.{resource.name}".lower()

    def read(self, ctx: Context, name: str) -> dict[str, Any] | None:
        return _get(ctx.client, f"/api/2.1/unity-catalog/schemas/{_q(name)}")

    def facets(self, ctx: Context, resource: SchemaResource) -> dict[str, Any]:
        return {
            "comment": of_value(resource.comment),
            "grants": of_value(_grant_facet(_with_managers(ctx, resource.grants))),
        }

    def create(self, ctx: Context, resource: SchemaResource, entry: Entry) -> None:
        ctx.client.create_schema(resource.catalog_name, resource.name, resource.comment)
        self.grants(ctx, resource, entry)

    def update(
        self, ctx: Context, resource: SchemaResource, changes: list[str], entry: Entry
    ) -> None:
        if "comment" in changes:
            ctx.client.request(
                "PATCH",
                f"/api/2.1/unity-catalog/schemas/{_q(self.name(resource))}",
                json={"comment": resource.comment or ""},
            )
        super().update(ctx, resource, changes, entry)

    def delete(self, ctx: Context, entry: Entry) -> None:
        ctx.client.delete_schema(entry["name"])


class SecretScopes(Handler):
    kind, order = "secret_scopes", 25

    def read(self, ctx: Context, name: str) -> dict[str, Any] | None:
        return next((s for s in ctx.client.list_secret_scopes() if s["name"] == name), None)

    def facets(self, ctx: Context, resource: SecretScopeResource) -> dict[str, Any]:
        return {"permissions": of_value(_acl(resource.permissions))}

    def create(self, ctx: Context, resource: SecretScopeResource, entry: Entry) -> None:
        ctx.client.create_secret_scope(resource.name)
        self._acls(ctx, resource)

    def update(
        self, ctx: Context, resource: SecretScopeResource, changes: list[str], entry: Entry
    ) -> None:
        if "permissions" in changes:
            self._acls(ctx, resource)

    def _acls(self, ctx: Context, resource: SecretScopeResource) -> None:
        for principal, level in _acl(resource.permissions).items():
            ctx.client.request(
                "POST",
                "/api/2.0/secrets/acls/put",
                json={"scope": resource.name, "principal": principal, "permission": level},
            )

    def delete(self, ctx: Context, entry: Entry) -> None:
        ctx.client.delete_secret_scope(entry["name"])


def _acl(permissions: list[Permission]) -> dict[str, str]:
    return {
        str(p.user_name or p.group_name or p.service_principal_name): p.level.upper()
        for p in permissions
    }


def _acl_entries(permissions: list[Permission]) -> list[dict[str, str]]:
    """``permissions`` as an ``access_control_list`` (workspace-object permissions API)."""
    return [
        {
            _principal_field(p): str(p.user_name or p.group_name or p.service_principal_name),
            "permission_level": p.level.upper(),
        }
        for p in permissions
    ]


def _acl_missing(acl: dict[str, Any], permissions: list[Permission]) -> bool:
    """Whether a permissions API answer lacks a level that ``permissions`` declares."""
    levels = {
        str(e.get("user_name") or e.get("group_name") or e.get("service_principal_name")): {
            p["permission_level"] for p in e.get("all_permissions") or []
        }
        for e in acl.get("access_control_list") or []
    }
    return any(level not in levels.get(who, set()) for who, level in _acl(permissions).items())


class RegisteredModels(Handler):
    kind, order, securable = "registered_models", 30, "registered_model"

    def name(self, resource: RegisteredModelResource) -> str:
        return f"{resource.catalog_name}.{resource.schema_name}.{resource.name}".lower()

    def read(self, ctx: Context, name: str) -> dict[str, Any] | None:
        return _get(ctx.client, f"/api/2.1/unity-catalog/models/{_q(name)}")

    def _version_print(self, ctx: Context, version: Any) -> str:
        if version.external_model is not None:
            return "external:" + of_value(version.external_model)
        relative = version.source or version.agent_code
        path = _inside(ctx.root, relative)
        # An agent's code is saved with the folder it lives in (its tools, its prompts).
        return of_path(path if version.source else path.parent) + of_value(
            [version.comment, version.tags]
        )

    def facets(self, ctx: Context, resource: RegisteredModelResource) -> dict[str, Any]:
        return {
            "comment": of_value(resource.comment),
            "versions": [self._version_print(ctx, v) for v in resource.versions],
            "aliases": of_value({a.alias_name.lower(): a.version_num for a in resource.aliases}),
            "grants": of_value(_grant_facet(_with_managers(ctx, resource.grants))),
        }

    def drifted(
        self, ctx: Context, resource: RegisteredModelResource, current: dict[str, Any]
    ) -> list[str]:
        out = super().drifted(ctx, resource, current)
        on_server = {a["alias_name"]: a["version_num"] for a in current.get("aliases") or []}
        mapping = ctx.versions.get(self.name(resource), {})
        for alias in resource.aliases:
            wanted = mapping.get(alias.version_num, alias.version_num)
            if on_server.get(alias.alias_name.lower()) != wanted:
                out.append("aliases")
                break
        return out

    def create(self, ctx: Context, resource: RegisteredModelResource, entry: Entry) -> None:
        ctx.client.create_registered_model(self.name(resource), resource.comment)
        self.update(ctx, resource, ["versions", "aliases", "grants"], entry)

    def update(
        self, ctx: Context, resource: RegisteredModelResource, changes: list[str], entry: Entry
    ) -> None:
        c, name = ctx.client, self.name(resource)
        if "comment" in changes:
            c.update_registered_model(name, comment=resource.comment or "")
        registered: list[dict[str, Any]] = list(entry.get("versions") or [])
        if "versions" in changes:
            for index, version in enumerate(resource.versions):
                fingerprint = self._version_print(ctx, version)
                if index < len(registered) and registered[index]["fingerprint"] == fingerprint:
                    continue
                number = self._register(ctx, name, version)
                record = {"fingerprint": fingerprint, "version": number}
                if index < len(registered):
                    registered[index] = record
                else:
                    registered.append(record)
                entry["versions"] = registered  # kept even if a later step fails
            entry["versions"] = registered[: len(resource.versions)]
        ctx.versions[name] = {
            i + 1: v["version"] for i, v in enumerate(entry.get("versions") or [])
        }
        if "aliases" in changes:
            for alias in resource.aliases:
                number = ctx.versions[name].get(alias.version_num, alias.version_num)
                c.request(
                    "PUT",
                    f"/api/2.1/unity-catalog/models/{_q(name)}/aliases/{_q(alias.alias_name)}",
                    json={"version_num": number},
                )
        super().update(ctx, resource, changes, entry)

    def _register(self, ctx: Context, name: str, version: Any) -> int:
        c = ctx.client
        if version.external_model is not None:
            created = c.create_model_version(
                name,
                external_model=version.external_model,
                comment=version.comment,
                tags=version.tags,
            )
        else:
            path = _inside(ctx.root, version.source or version.agent_code)
            folder = _save_agent(path) if version.agent_code else path
            ctx.say(f"  uploading {folder.name} …")
            prefix = f"bundles/{uuid.uuid4().hex[:16]}"
            source = c.stage(folder, prefix=prefix)
            try:
                created = c.create_model_version(
                    name, source, comment=version.comment, tags=version.tags
                )
            finally:  # the version holds a copy: the upload is no longer needed
                with contextlib.suppress(BastionError):
                    c.request("DELETE", f"/api/2.0/bastion/staging/files/{prefix}")
        if created.get("status") == "FAILED_REGISTRATION":
            raise InvalidRequest(
                f"Version of {name} failed to register: {created.get('status_message')}"
            )
        return int(created["version"])

    def delete(self, ctx: Context, entry: Entry) -> None:
        ctx.client.delete_registered_model(entry["name"])


def _inside(root: Path, relative: str | None) -> Path:
    """A path of the bundle: relative, and never outside the bundle's folder."""
    if not relative:
        raise InvalidRequest("A version needs a path.")
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.exists():
        raise InvalidRequest(f"{relative!r} is not a file or folder inside the bundle.")
    return path


def _save_agent(code: Path) -> Path:
    """An MLflow models-from-code agent saved as a model folder (in a temporary place)."""
    import tempfile

    import mlflow  # only bundles that declare agent code need it, and only when they deploy

    target = Path(tempfile.mkdtemp(prefix="bastion-agent-")) / code.parent.name
    mlflow.set_tracking_uri(f"sqlite:///{target.parent / 'mlflow.db'}")
    requirements = code.parent / "requirements.txt"
    mlflow.pyfunc.save_model(
        str(target),
        python_model=str(code),
        code_paths=[str(p) for p in sorted(code.parent.glob("*.py")) if p != code] or None,
        pip_requirements=str(requirements) if requirements.exists() else None,
    )
    return target


class Endpoints(Handler):
    kind, order = "model_serving_endpoints", 40

    def read(self, ctx: Context, name: str) -> dict[str, Any] | None:
        return _get(ctx.client, f"/api/2.0/serving-endpoints/{_q(name)}")

    def _config(self, ctx: Context, resource: EndpointResource) -> dict[str, Any]:
        """The config with the bundle's version numbers translated to the registry's."""
        config = dict(resource.config)
        entities = []
        for entity in config.get("served_entities") or []:
            entity = dict(entity)
            model = str(entity.get("entity_name") or "").lower()
            version = str(entity.get("entity_version") or "")
            if model in ctx.versions and version.isdigit():
                entity["entity_version"] = str(ctx.versions[model].get(int(version), int(version)))
            entities.append(entity)
        if entities:
            config["served_entities"] = entities
        return config

    def facets(self, ctx: Context, resource: EndpointResource) -> dict[str, Any]:
        return {
            "config": of_value([resource.config, ctx.versions]),
            "ai_gateway": of_value(resource.ai_gateway or {}),
            "tags": of_value(resource.tags or []),
            "permissions": of_value(_acl(resource.permissions)),
            "description": of_value(resource.description),
        }

    def drifted(
        self, ctx: Context, resource: EndpointResource, current: dict[str, Any]
    ) -> list[str]:
        acl = ctx.client.get_serving_endpoint_permissions(resource.name)
        return ["permissions"] if _acl_missing(acl, resource.permissions) else []

    def create(self, ctx: Context, resource: EndpointResource, entry: Entry) -> None:
        body: dict[str, Any] = {"name": resource.name, "config": self._config(ctx, resource)}
        for key in ("ai_gateway", "tags", "description", "rate_limits"):
            value = getattr(resource, key)
            if value:
                body[key] = value
        ctx.client.request("POST", "/api/2.0/serving-endpoints", json=body)
        self._permissions(ctx, resource)

    def update(
        self, ctx: Context, resource: EndpointResource, changes: list[str], entry: Entry
    ) -> None:
        c = ctx.client
        if "config" in changes:
            c.update_serving_endpoint_config(resource.name, self._config(ctx, resource))
        if "ai_gateway" in changes:
            c.put_serving_endpoint_ai_gateway(resource.name, resource.ai_gateway or {})
        if "tags" in changes:
            tags = {str(t.get("key")): str(t.get("value", "")) for t in resource.tags or []}
            old = {t["key"] for t in (c.get_serving_endpoint(resource.name).get("tags") or [])}
            c.request(
                "PATCH",
                f"/api/2.0/serving-endpoints/{_q(resource.name)}/tags",
                json={
                    "add_tags": [{"key": k, "value": v} for k, v in tags.items()],
                    "delete_tags": sorted(old - set(tags)),
                },
            )
        if "permissions" in changes:
            self._permissions(ctx, resource)
        if "description" in changes:
            raise Conflict(
                f"The description of endpoint '{resource.name}' cannot change after creation; "
                "remove it from the bundle's change or recreate the endpoint."
            )

    def _permissions(self, ctx: Context, resource: EndpointResource) -> None:
        acl = _acl_entries(resource.permissions)
        if acl:
            ctx.client.update_serving_endpoint_permissions(resource.name, acl)

    @staticmethod
    def _manager_entry(ctx: Context, name: str) -> dict[str, str]:
        kind = "user_name" if "@" in name else "group_name"
        found = ctx.client.request(
            "GET",
            "/api/2.0/preview/scim/v2/ServicePrincipals",
            params={"filter": f'applicationId eq "{name}"'},
        ).get("Resources")
        return {"service_principal_name" if found else kind: name, "permission_level": "CAN_MANAGE"}

    def delete(self, ctx: Context, entry: Entry) -> None:
        ctx.client.delete_serving_endpoint(entry["name"])


def _principal_field(p: Permission) -> str:
    if p.user_name:
        return "user_name"
    return "group_name" if p.group_name else "service_principal_name"


class Grants(Handler):
    """``resources.grants``: privileges on a securable the bundle does not create."""

    kind, order = "grants", 70

    def name(self, resource: GrantResource) -> str:
        return f"{resource.securable_type}:{resource.full_name}:{resource.principal}"

    def read(self, ctx: Context, name: str) -> dict[str, Any] | None:
        kind, full_name, _ = name.split(":", 2)
        try:
            return {"grants": ctx.client.get_permissions(kind, full_name)}
        except NotFound:
            raise InvalidRequest(
                f"{kind} {full_name!r} does not exist; grants need it first."
            ) from None

    def facets(self, ctx: Context, resource: GrantResource) -> dict[str, Any]:
        return {"privileges": of_value(sorted(resource.privileges))}

    def drifted(self, ctx: Context, resource: GrantResource, current: dict[str, Any]) -> list[str]:
        wanted = _grant_facet([Grant(principal=resource.principal, privileges=resource.privileges)])
        drift = _grants_drifted(ctx.client, resource.securable_type, resource.full_name, wanted)
        return ["privileges"] if drift else []

    def create(self, ctx: Context, resource: GrantResource, entry: Entry) -> None:
        self.update(ctx, resource, ["privileges"], entry)

    def update(
        self, ctx: Context, resource: GrantResource, changes: list[str], entry: Entry
    ) -> None:
        wanted = _grant_facet([Grant(principal=resource.principal, privileges=resource.privileges)])
        _apply_grants(ctx.client, resource.securable_type, resource.full_name, wanted, entry)
        entry["securable"] = [resource.securable_type, resource.full_name]

    def delete(self, ctx: Context, entry: Entry) -> None:
        kind, full_name = entry["securable"]
        for principal, privileges in (entry.get("granted") or {}).items():
            ctx.client.update_permissions(kind, full_name, principal, remove=privileges)


def _comment_clause(comment: str | None) -> str:
    """`` COMMENT '…'`` for a CREATE statement (quotes doubled), or nothing."""
    return f" COMMENT '{comment.replace(chr(39), chr(39) * 2)}'" if comment else ""


class Views(Handler):
    kind, order, securable = "views", 60, "table"

    def name(self, resource: ViewResource) -> str:
        return f"{resource.catalog_name}.{resource.schema_name}.{resource.name}".lower()

    def read(self, ctx: Context, name: str) -> dict[str, Any] | None:
        try:
            return _get(ctx.client, f"/api/2.1/unity-catalog/tables/{_q(name)}")
        except PermissionDenied:
            return {"hidden": True}

    def facets(self, ctx: Context, resource: ViewResource) -> dict[str, Any]:
        return {
            "definition": of_value([resource.query, resource.comment]),
            "grants": of_value(_grant_facet(_with_managers(ctx, resource.grants))),
        }

    def _define(self, ctx: Context, resource: ViewResource) -> None:
        comment = _comment_clause(resource.comment)
        _sql(
            ctx.client,
            f"CREATE OR REPLACE VIEW {quoted(self.name(resource))}{comment} AS {resource.query}",
        )

    def create(self, ctx: Context, resource: ViewResource, entry: Entry) -> None:
        self._define(ctx, resource)
        self.grants(ctx, resource, entry)

    def update(
        self, ctx: Context, resource: ViewResource, changes: list[str], entry: Entry
    ) -> None:
        if "definition" in changes:
            self._define(ctx, resource)
        super().update(ctx, resource, changes, entry)

    def delete(self, ctx: Context, entry: Entry) -> None:
        _sql(ctx.client, f"DROP VIEW IF EXISTS {quoted(entry['name'])}")


class Functions(Handler):
    kind, order, securable = "functions", 50, "function"

    def name(self, resource: FunctionResource) -> str:
        return f"{resource.catalog_name}.{resource.schema_name}.{resource.name}".lower()

    def read(self, ctx: Context, name: str) -> dict[str, Any] | None:
        catalog, schema, function = name.split(".")
        try:
            _, rows = ctx.client.statement(
                f"SHOW FUNCTIONS IN {quoted(f'{catalog}.{schema}')} LIKE '{function}'"
            )
        except NotFound:  # its schema does not exist (yet)
            return None
        return {"name": name} if any(r[0] == name for r in rows) else None

    def facets(self, ctx: Context, resource: FunctionResource) -> dict[str, Any]:
        return {
            "definition": of_value(
                [resource.parameters, resource.returns, resource.body, resource.comment]
            ),
            "grants": of_value(_grant_facet(_with_managers(ctx, resource.grants))),
        }

    def _define(self, ctx: Context, resource: FunctionResource) -> None:
        comment = _comment_clause(resource.comment)
        _sql(
            ctx.client,
            f"CREATE OR REPLACE FUNCTION {quoted(self.name(resource))}({resource.parameters}) "
            f"RETURNS {resource.returns}{comment} RETURN {resource.body}",
        )

    def create(self, ctx: Context, resource: FunctionResource, entry: Entry) -> None:
        self._define(ctx, resource)
        self.grants(ctx, resource, entry)

    def update(
        self, ctx: Context, resource: FunctionResource, changes: list[str], entry: Entry
    ) -> None:
        if "definition" in changes:
            self._define(ctx, resource)
        super().update(ctx, resource, changes, entry)

    def delete(self, ctx: Context, entry: Entry) -> None:
        _sql(ctx.client, f"DROP FUNCTION IF EXISTS {quoted(entry['name'])}")


class RedTeamScans(Handler):
    """A gate: the scan runs when it or its endpoint changed, and fails the deploy over it."""

    kind, order = "redteam_scans", 90
    timeout_s = 3600.0

    def name(self, resource: RedTeamScanResource) -> str:
        return resource.endpoint

    def read(self, ctx: Context, name: str) -> dict[str, Any] | None:
        return None  # a scan is a run, not an object: planned by fingerprint alone

    def facets(self, ctx: Context, resource: RedTeamScanResource) -> dict[str, Any]:
        return {"scan": of_value(resource.model_dump()), "endpoint": of_value(ctx.versions)}

    def create(self, ctx: Context, resource: RedTeamScanResource, entry: Entry) -> None:
        self.run(ctx, resource, entry)

    def update(
        self, ctx: Context, resource: RedTeamScanResource, changes: list[str], entry: Entry
    ) -> None:
        self.run(ctx, resource, entry)

    def run(self, ctx: Context, resource: RedTeamScanResource, entry: Entry) -> None:
        c = ctx.client
        self._wait_ready(ctx, resource.endpoint)
        body = {
            k: v
            for k, v in resource.model_dump(exclude={"fail_over_asr", "lifecycle"}).items()
            if v is not None
        }
        started = c.request("POST", "/api/2.0/redteam/scans", json=body)
        scan_id = started["scan_id"]
        ctx.say(f"  red-team scan {scan_id} on {resource.endpoint} …")
        deadline = time.monotonic() + self.timeout_s
        scan = started
        while scan.get("status") == "running":
            if time.monotonic() > deadline:
                raise Conflict(f"Red-team scan {scan_id} did not finish in time.")
            time.sleep(1.0)
            scan = c.request("GET", f"/api/2.0/redteam/scans/{scan_id}")
        entry["scan_id"] = scan_id
        asr = scan.get("asr")
        entry["asr"] = asr
        if scan.get("status") != "completed" or not scan.get("evaluated"):
            raise Conflict(
                f"Red-team scan {scan_id} ended '{scan.get('status')}' with nothing evaluated."
            )
        if resource.fail_over_asr is not None and float(asr or 0.0) > resource.fail_over_asr:
            raise Conflict(
                f"Red-team gate failed on {resource.endpoint}: ASR {float(asr or 0):.2f}% is above "
                f"{resource.fail_over_asr}% (scan {scan_id}); fix the model or raise the gate."
            )
        ctx.say(f"  gate passed: ASR {float(asr or 0):.2f}%")

    def _wait_ready(self, ctx: Context, endpoint: str, timeout_s: float = 600.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            state = ctx.client.get_serving_endpoint(endpoint).get("state") or {}
            if state.get("ready") == "READY":
                return
            if state.get("config_update") == "UPDATE_FAILED" or time.monotonic() > deadline:
                raise Conflict(
                    f"Endpoint '{endpoint}' is not ready: {state.get('message') or state}"
                )
            time.sleep(1.0)

    def delete(self, ctx: Context, entry: Entry) -> None:
        return None  # scans are records, kept


def _app_acl_path(name: str) -> str:
    return f"/api/2.0/permissions/apps/{_q(name)}"


class Apps(Handler):
    """An app: created with its resources and scopes, its folder uploaded and deployed, started
    only with ``lifecycle.started: true`` (as Databricks bundles do)."""

    kind, order = "apps", 80
    ready_timeout_s = 300.0

    def read(self, ctx: Context, name: str) -> dict[str, Any] | None:
        try:
            return _get(ctx.client, app_path(name))
        except PermissionDenied:
            return {"hidden": True}  # someone else's: never adopted

    def _source(self, ctx: Context, resource: AppBundleResource) -> tuple[Path, dict[str, str]]:
        folder = _inside(ctx.root, resource.source_code_path)
        if not folder.is_dir():
            raise InvalidRequest(f"{resource.source_code_path!r} is not a folder.")
        extra: dict[str, str] = {}
        if resource.config is not None:
            import yaml

            env = [
                {"name": e.name, "value": e.value}
                if e.value is not None
                else {"name": e.name, "valueFrom": e.value_from}
                for e in resource.config.env
            ]
            extra["app.yaml"] = yaml.safe_dump(
                {"command": resource.config.command, "env": env}, sort_keys=False
            )
        return folder, extra

    def facets(self, ctx: Context, resource: AppBundleResource) -> dict[str, Any]:
        folder, extra = self._source(ctx, resource)
        return {
            "definition": of_value(
                [resource.description, resource.resources, sorted(resource.user_api_scopes)]
            ),
            "source": of_path(folder) + of_value(extra),
            "permissions": of_value(_acl(resource.permissions)),
            "started": of_value(bool(resource.lifecycle.started)),
        }

    def drifted(
        self, ctx: Context, resource: AppBundleResource, current: dict[str, Any]
    ) -> list[str]:
        out = []
        state = (current.get("app_status") or {}).get("state")
        if resource.lifecycle.started and state not in ("RUNNING", "DEPLOYING"):
            out.append("started")  # it crashed or someone stopped it: deploy starts it again

        acl = ctx.client.request("GET", _app_acl_path(resource.name))
        if _acl_missing(acl, resource.permissions):
            out.append("permissions")
        return out

    def create(self, ctx: Context, resource: AppBundleResource, entry: Entry) -> None:
        body: dict[str, Any] = {"name": resource.name}
        if resource.description:
            body["description"] = resource.description
        if resource.user_api_scopes:
            body["user_api_scopes"] = resource.user_api_scopes
        if resource.resources:
            body["resources"] = resource.resources
        ctx.client.request("POST", "/api/2.0/apps", json=body)
        self._permissions(ctx, resource)
        if resource.lifecycle.started:
            self._deploy(ctx, resource)
        else:
            ctx.say(
                f"  app {resource.name} created, not started (set lifecycle.started: true, or "
                f"run `bastion apps deploy {resource.name}`)"
            )

    def update(
        self, ctx: Context, resource: AppBundleResource, changes: list[str], entry: Entry
    ) -> None:
        if "definition" in changes:
            ctx.client.request(
                "PATCH",
                app_path(resource.name),
                json={
                    "description": resource.description or "",
                    "user_api_scopes": resource.user_api_scopes,
                    "resources": resource.resources,
                },
            )
        if "permissions" in changes:
            self._permissions(ctx, resource)
        if resource.lifecycle.started and {"source", "started"} & set(changes):
            self._deploy(ctx, resource)
        elif "started" in changes and resource.lifecycle.started is False:
            ctx.client.request("POST", app_path(resource.name, "/stop"))

    def _permissions(self, ctx: Context, resource: AppBundleResource) -> None:
        acl = _acl_entries(resource.permissions)
        if acl:
            ctx.client.request(
                "PATCH",
                _app_acl_path(resource.name),
                json={"access_control_list": acl},
            )

    def _deploy(self, ctx: Context, resource: AppBundleResource) -> None:
        """Upload the folder, deploy it, and wait until the app runs (or say why not)."""
        folder, extra = self._source(ctx, resource)
        source, size = upload_source(ctx.client, resource.name, folder, extra)
        ctx.say(f"  app {resource.name}: uploaded {size} bytes, deploying …")
        started = ctx.client.request(
            "POST", app_path(resource.name, "/deployments"), json={"source_code_path": source}
        )
        deployment = wait_for_deployment(ctx.client, resource.name, started)
        status = deployment["status"]
        if status["state"] != "SUCCEEDED":
            raise Conflict(
                f"App {resource.name}: deployment {status['state']}: {status['message']}"
            )
        app = wait_while_deploying(ctx.client, resource.name, self.ready_timeout_s)
        state = app["app_status"]
        if state["state"] != "RUNNING":
            raise Conflict(
                f"App {resource.name} is {state['state']}: {state.get('message') or ''} "
                f"(see `bastion apps logs {resource.name}`)"
            )
        ctx.say(f"  app {resource.name} running at {app['url']}")

    def delete(self, ctx: Context, entry: Entry) -> None:
        with contextlib.suppress(NotFound):
            ctx.client.request("DELETE", app_path(entry["name"]))


HANDLERS: tuple[Handler, ...] = tuple(
    sorted(
        (
            Catalogs(),
            Schemas(),
            SecretScopes(),
            RegisteredModels(),
            Endpoints(),
            Functions(),
            Views(),
            Grants(),
            RedTeamScans(),
            Apps(),
        ),
        key=lambda h: h.order,
    )
)
BY_KIND = {h.kind: h for h in HANDLERS}
