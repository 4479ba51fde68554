"""Client methods for registered models, secrets, serving endpoints and their permissions.

Mixed into :class:`~bastion.client.BastionClient`; each method is one REST call through
``self.request``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bastion.errors import InvalidRequest


def _q(name: str) -> str:
    return quote(name, safe="")


def _tags(tags: dict[str, str] | None) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in (tags or {}).items()]


class ServingClientMixin:
    def request(self, method: str, path: str, **kwargs: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    # -- staging ------------------------------------------------------------------------------

    def stage(self, local: str | Path, prefix: str | None = None) -> str:
        """Upload a local file or folder into your staging area on the server; return the
        ``staging:<path>`` source that names it (e.g. for :meth:`create_model_version`)."""
        root = Path(local)
        if root.is_symlink() or not (root.is_file() or root.is_dir()):
            raise InvalidRequest(f"{root} is not a regular file or folder.")
        base = f"{prefix or 'uploads/' + uuid.uuid4().hex[:12]}/{root.name}"
        files = [root] if root.is_file() else []
        for folder, dirs, names in os.walk(root, followlinks=False) if root.is_dir() else ():
            for name in dirs + names:
                path = Path(folder) / name
                if path.is_symlink() or not (path.is_file() or path.is_dir()):
                    raise InvalidRequest(f"{path} is not a regular file or folder.")
                if path.is_file():
                    files.append(path)
        for path in files:
            relative = base if path == root else f"{base}/{path.relative_to(root).as_posix()}"
            with path.open("rb") as body:
                self.request(
                    "PUT", f"/api/2.0/bastion/staging/files/{quote(relative)}", content=body
                )
        return f"staging:{base}"

    # -- registered models --------------------------------------------------------------------

    def create_registered_model(
        self, full_name: str, comment: str | None = None, tags: dict[str, str] | None = None
    ) -> dict[str, Any]:
        catalog, schema, name = full_name.split(".")
        body: dict[str, Any] = {"name": name, "catalog_name": catalog, "schema_name": schema}
        if comment is not None:
            body["comment"] = comment
        if tags:
            body["tags"] = _tags(tags)
        return dict(self.request("POST", "/api/2.1/unity-catalog/models", json=body))

    def list_registered_models(self, catalog: str, schema: str) -> list[dict[str, Any]]:
        body = self.request(
            "GET",
            "/api/2.1/unity-catalog/models",
            params={"catalog_name": catalog, "schema_name": schema},
        )
        return list(body.get("registered_models", []))

    def get_registered_model(self, full_name: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/2.1/unity-catalog/models/{_q(full_name)}"))

    def update_registered_model(
        self,
        full_name: str,
        *,
        comment: str | None = None,
        owner: str | None = None,
        tags: dict[str, str] | None = None,
        delete_tags: list[str] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if comment is not None:
            body["comment"] = comment
        if owner is not None:
            body["owner"] = owner
        if tags:
            body["tags"] = _tags(tags)
        if delete_tags:
            body["delete_tags"] = delete_tags
        return dict(
            self.request("PATCH", f"/api/2.1/unity-catalog/models/{_q(full_name)}", json=body)
        )

    def delete_registered_model(self, full_name: str) -> None:
        self.request("DELETE", f"/api/2.1/unity-catalog/models/{_q(full_name)}")

    def create_model_version(
        self,
        full_name: str,
        source: str | None = None,
        *,
        external_model: dict[str, Any] | None = None,
        comment: str | None = None,
        run_id: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Register ``source`` (``staging:<path>`` from :meth:`stage`, or a path under a source
        root the administrator configured) or an external-model config as the next version."""
        catalog, schema, name = full_name.split(".")
        body: dict[str, Any] = {"catalog_name": catalog, "schema_name": schema, "model_name": name}
        if source is not None:
            body["source"] = source
        if external_model is not None:
            body["external_model"] = external_model
        if comment is not None:
            body["comment"] = comment
        if run_id is not None:
            body["run_id"] = run_id
        if tags:
            body["tags"] = _tags(tags)
        return dict(self.request("POST", "/api/2.1/unity-catalog/models/versions", json=body))

    def list_model_versions(self, full_name: str) -> list[dict[str, Any]]:
        body = self.request("GET", f"/api/2.1/unity-catalog/models/{_q(full_name)}/versions")
        return list(body.get("model_versions", []))

    def get_model_version(self, full_name: str, version: int) -> dict[str, Any]:
        return dict(
            self.request(
                "GET", f"/api/2.1/unity-catalog/models/{_q(full_name)}/versions/{int(version)}"
            )
        )

    def update_model_version(
        self,
        full_name: str,
        version: int,
        *,
        comment: str | None = None,
        tags: dict[str, str] | None = None,
        delete_tags: list[str] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if comment is not None:
            body["comment"] = comment
        if tags:
            body["tags"] = _tags(tags)
        if delete_tags:
            body["delete_tags"] = delete_tags
        return dict(
            self.request(
                "PATCH",
                f"/api/2.1/unity-catalog/models/{_q(full_name)}/versions/{int(version)}",
                json=body,
            )
        )

    def delete_model_version(self, full_name: str, version: int) -> None:
        self.request(
            "DELETE", f"/api/2.1/unity-catalog/models/{_q(full_name)}/versions/{int(version)}"
        )

    def set_registered_model_alias(
        self, full_name: str, alias: str, version: int
    ) -> dict[str, Any]:
        return dict(
            self.request(
                "PUT",
                f"/api/2.1/unity-catalog/models/{_q(full_name)}/aliases/{_q(alias.lstrip('@'))}",
                json={"version_num": int(version)},
            )
        )

    def get_model_version_by_alias(self, full_name: str, alias: str) -> dict[str, Any]:
        return dict(
            self.request(
                "GET",
                f"/api/2.1/unity-catalog/models/{_q(full_name)}/aliases/{_q(alias.lstrip('@'))}",
            )
        )

    def delete_registered_model_alias(self, full_name: str, alias: str) -> None:
        self.request(
            "DELETE",
            f"/api/2.1/unity-catalog/models/{_q(full_name)}/aliases/{_q(alias.lstrip('@'))}",
        )

    # -- secrets ------------------------------------------------------------------------------

    def create_secret_scope(self, scope: str, initial_manage_principal: str | None = None) -> None:
        body: dict[str, Any] = {"scope": scope}
        if initial_manage_principal:
            body["initial_manage_principal"] = initial_manage_principal
        self.request("POST", "/api/2.0/secrets/scopes/create", json=body)

    def list_secret_scopes(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/api/2.0/secrets/scopes/list").get("scopes", []))

    def delete_secret_scope(self, scope: str) -> None:
        self.request("POST", "/api/2.0/secrets/scopes/delete", json={"scope": scope})

    def put_secret(self, scope: str, key: str, value: str) -> None:
        """Store ``value`` (encrypted at rest); no API ever returns it."""
        self.request(
            "POST", "/api/2.0/secrets/put", json={"scope": scope, "key": key, "string_value": value}
        )

    def list_secrets(self, scope: str) -> list[dict[str, Any]]:
        body = self.request("GET", "/api/2.0/secrets/list", params={"scope": scope})
        return list(body.get("secrets", []))

    def delete_secret(self, scope: str, key: str) -> None:
        self.request("POST", "/api/2.0/secrets/delete", json={"scope": scope, "key": key})

    def put_secret_acl(self, scope: str, principal: str, permission: str) -> None:
        self.request(
            "POST",
            "/api/2.0/secrets/acls/put",
            json={"scope": scope, "principal": principal, "permission": permission},
        )

    def list_secret_acls(self, scope: str) -> list[dict[str, Any]]:
        body = self.request("GET", "/api/2.0/secrets/acls/list", params={"scope": scope})
        return list(body.get("items", []))

    def delete_secret_acl(self, scope: str, principal: str) -> None:
        self.request(
            "POST", "/api/2.0/secrets/acls/delete", json={"scope": scope, "principal": principal}
        )

    # -- serving endpoints --------------------------------------------------------------------

    def create_serving_endpoint(
        self,
        name: str,
        config: dict[str, Any],
        *,
        ai_gateway: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "config": config}
        if ai_gateway is not None:
            body["ai_gateway"] = ai_gateway
        if tags:
            body["tags"] = _tags(tags)
        if description is not None:
            body["description"] = description
        return dict(self.request("POST", "/api/2.0/serving-endpoints", json=body))

    def list_serving_endpoints(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/api/2.0/serving-endpoints").get("endpoints", []))

    def get_serving_endpoint(self, name: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/2.0/serving-endpoints/{_q(name)}"))

    def update_serving_endpoint_config(self, name: str, config: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.request("PUT", f"/api/2.0/serving-endpoints/{_q(name)}/config", json=config)
        )

    def put_serving_endpoint_ai_gateway(
        self, name: str, ai_gateway: dict[str, Any]
    ) -> dict[str, Any]:
        return dict(
            self.request(
                "PUT", f"/api/2.0/serving-endpoints/{_q(name)}/ai-gateway", json=ai_gateway
            )
        )

    def patch_serving_endpoint_tags(
        self,
        name: str,
        add: dict[str, str] | None = None,
        delete: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        body = {"add_tags": _tags(add), "delete_tags": delete or []}
        reply = self.request("PATCH", f"/api/2.0/serving-endpoints/{_q(name)}/tags", json=body)
        return list(reply["tags"])  # EndpointTags, as Databricks and databricks-sdk have it

    def delete_serving_endpoint(self, name: str) -> None:
        self.request("DELETE", f"/api/2.0/serving-endpoints/{_q(name)}")

    def get_serving_endpoint_permissions(self, name: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/2.0/permissions/serving-endpoints/{_q(name)}"))

    def update_serving_endpoint_permissions(
        self, name: str, access_control_list: list[dict[str, str]], *, replace: bool = False
    ) -> dict[str, Any]:
        """PATCH adds to the ACL; ``replace=True`` PUTs the whole list instead."""
        return dict(
            self.request(
                "PUT" if replace else "PATCH",
                f"/api/2.0/permissions/serving-endpoints/{_q(name)}",
                json={"access_control_list": access_control_list},
            )
        )
