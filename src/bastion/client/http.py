"""HTTP client with profiles from ``~/.bastion/config`` or ``BASTION_HOST`` / ``BASTION_TOKEN``."""

from __future__ import annotations

import os
import time
from typing import Any
from urllib.parse import quote

import httpx

from bastion import errors
from bastion.client.profiles import Profile, config_path, load_profile, save_profile
from bastion.client.serving import ServingClientMixin

__all__ = ["BastionClient", "Profile", "config_path", "load_profile", "save_profile"]

_BY_CODE: dict[str, type[errors.BastionError]] = {
    "INVALID_PARAMETER_VALUE": errors.InvalidRequest,
    "MALFORMED_REQUEST": errors.MalformedRequest,
    "UNAUTHENTICATED": errors.Unauthenticated,
    "PERMISSION_DENIED": errors.PermissionDenied,
    "RESOURCE_DOES_NOT_EXIST": errors.NotFound,
    "ENDPOINT_NOT_FOUND": errors.NotFound,
    "RESOURCE_ALREADY_EXISTS": errors.AlreadyExists,
    "REQUEST_LIMIT_EXCEEDED": errors.RateLimited,
}


def _client_credentials() -> tuple[str | None, str | None]:
    for prefix in ("BASTION", "DATABRICKS"):
        client_id = os.environ.get(f"{prefix}_CLIENT_ID")
        secret = os.environ.get(f"{prefix}_CLIENT_SECRET")
        if client_id and secret:
            return client_id, secret
    return None, None


def _q(name: str) -> str:
    return quote(name, safe="")


class BastionClient(ServingClientMixin):
    def __init__(self, host: str, token: str | None, *, timeout: float = 60.0) -> None:
        self.host = host.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # A plain-HTTP host needs no certificate store (loading one costs a CLI start ~25 ms).
        self._http = httpx.Client(
            base_url=self.host,
            headers=headers,
            timeout=timeout,
            verify=self.host.startswith("https://"),
        )

    @classmethod
    def from_profile(cls, name: str = "DEFAULT") -> BastionClient:
        """The active profile; without a token, an app's service-principal credentials from
        the environment (``BASTION_CLIENT_ID`` / ``BASTION_CLIENT_SECRET``, or the
        ``DATABRICKS_*`` names) are exchanged for an OAuth token."""
        profile = load_profile(name)
        if profile.token is None:
            client_id, secret = _client_credentials()
            if client_id and secret:
                return cls.from_client_credentials(profile.host, client_id, secret)
        return cls(profile.host, profile.token)

    @classmethod
    def from_client_credentials(cls, host: str, client_id: str, secret: str) -> BastionClient:
        """A client for a service principal (OAuth ``client_credentials``)."""
        anonymous = cls(host, None)
        try:
            body = anonymous.request(
                "POST",
                "/oidc/v1/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": client_id,
                    "client_secret": secret,
                },
            )
        finally:
            anonymous.close()
        return cls(host, str(body["access_token"]))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BastionClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise errors.Unavailable(f"Cannot reach Bastion at {self.host}: {exc}") from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            code = str(body.get("error_code", ""))
            message = str(body.get("message") or response.text or response.reason_phrase)
            raise _BY_CODE.get(code, errors.BastionError)(message)
        if response.status_code == 204 or not response.content:
            return {}
        return response.json()

    # -- identity -----------------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        return dict(self.request("GET", "/api/2.0/preview/scim/v2/Me"))

    def list_principals(self, kind: str) -> list[dict[str, Any]]:
        body = self.request("GET", f"/api/2.0/preview/scim/v2/{kind}")
        return list(body.get("Resources", []))

    def find_principal(self, kind: str, attribute: str, value: str) -> dict[str, Any]:
        body = self.request(
            "GET",
            f"/api/2.0/preview/scim/v2/{kind}",
            params={"filter": f'{attribute} eq "{value}"'},
        )
        resources = body.get("Resources", [])
        if not resources:
            raise errors.NotFound(f"No {kind[:-1].lower()} {value!r}.")
        return dict(resources[0])

    def create_user(
        self, user_name: str, display_name: str | None = None, password: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"userName": user_name}
        if display_name:
            body["displayName"] = display_name
        if password:
            body["password"] = password
        return dict(self.request("POST", "/api/2.0/preview/scim/v2/Users", json=body))

    def create_group(self, name: str) -> dict[str, Any]:
        return dict(
            self.request("POST", "/api/2.0/preview/scim/v2/Groups", json={"displayName": name})
        )

    def patch_group_members(self, group_id: str, op: str, member_ids: list[str]) -> dict[str, Any]:
        body = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": op, "path": "members", "value": [{"value": m} for m in member_ids]}
            ],
        }
        return dict(self.request("PATCH", f"/api/2.0/preview/scim/v2/Groups/{group_id}", json=body))

    def delete_principal(self, kind: str, principal_id: str) -> None:
        self.request("DELETE", f"/api/2.0/preview/scim/v2/{kind}/{principal_id}")

    def create_service_principal(self, display_name: str) -> dict[str, Any]:
        return dict(
            self.request(
                "POST",
                "/api/2.0/preview/scim/v2/ServicePrincipals",
                json={"displayName": display_name},
            )
        )

    def create_service_principal_secret(self, sp_id: str) -> dict[str, Any]:
        return dict(
            self.request("POST", f"/api/2.0/accounts/servicePrincipals/{sp_id}/credentials/secrets")
        )

    # -- tokens -------------------------------------------------------------------------------

    def create_token(
        self,
        lifetime_seconds: int | None = None,
        comment: str | None = None,
        scopes: list[str] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if lifetime_seconds is not None:
            body["lifetime_seconds"] = lifetime_seconds
        if comment is not None:
            body["comment"] = comment
        if scopes is not None:
            body["scopes"] = scopes
        return dict(self.request("POST", "/api/2.0/token/create", json=body))

    def list_tokens(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/api/2.0/token/list").get("token_infos", []))

    def delete_token(self, token_id: str) -> None:
        self.request("POST", "/api/2.0/token/delete", json={"token_id": token_id})

    def oauth_token(self, **form: str) -> dict[str, Any]:
        return dict(self.request("POST", "/oidc/v1/token", data=form))

    # -- catalog ------------------------------------------------------------------------------

    def create_catalog(self, name: str, comment: str | None = None) -> dict[str, Any]:
        body = {"name": name, **({"comment": comment} if comment else {})}
        return dict(self.request("POST", "/api/2.1/unity-catalog/catalogs", json=body))

    def list_catalogs(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/api/2.1/unity-catalog/catalogs").get("catalogs", []))

    def get_catalog(self, name: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/2.1/unity-catalog/catalogs/{_q(name)}"))

    def delete_catalog(self, name: str, force: bool = False) -> None:
        self.request(
            "DELETE", f"/api/2.1/unity-catalog/catalogs/{_q(name)}", params={"force": force}
        )

    def create_schema(self, catalog: str, name: str, comment: str | None = None) -> dict[str, Any]:
        body = {"catalog_name": catalog, "name": name, **({"comment": comment} if comment else {})}
        return dict(self.request("POST", "/api/2.1/unity-catalog/schemas", json=body))

    def list_schemas(self, catalog: str) -> list[dict[str, Any]]:
        body = self.request(
            "GET", "/api/2.1/unity-catalog/schemas", params={"catalog_name": catalog}
        )
        return list(body.get("schemas", []))

    def get_schema(self, full_name: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/2.1/unity-catalog/schemas/{_q(full_name)}"))

    def delete_schema(self, full_name: str, force: bool = False) -> None:
        self.request(
            "DELETE", f"/api/2.1/unity-catalog/schemas/{_q(full_name)}", params={"force": force}
        )

    def get_permissions(self, securable_type: str, full_name: str) -> list[dict[str, Any]]:
        body = self.request(
            "GET", f"/api/2.1/unity-catalog/permissions/{securable_type}/{_q(full_name)}"
        )
        return list(body.get("privilege_assignments", []))

    def get_effective_permissions(
        self, securable_type: str, full_name: str, principal: str | None = None
    ) -> list[dict[str, Any]]:
        body = self.request(
            "GET",
            f"/api/2.1/unity-catalog/effective-permissions/{securable_type}/{_q(full_name)}",
            params={"principal": principal} if principal else None,
        )
        return list(body.get("privilege_assignments", []))

    def update_permissions(
        self,
        securable_type: str,
        full_name: str,
        principal: str,
        add: list[str] | None = None,
        remove: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        change = {"principal": principal, "add": add or [], "remove": remove or []}
        body = self.request(
            "PATCH",
            f"/api/2.1/unity-catalog/permissions/{securable_type}/{_q(full_name)}",
            json={"changes": [change]},
        )
        return list(body.get("privilege_assignments", []))

    # -- tables and SQL -----------------------------------------------------------------------

    def list_tables(self, catalog: str, schema: str) -> list[dict[str, Any]]:
        body = self.request(
            "GET",
            "/api/2.1/unity-catalog/tables",
            params={"catalog_name": catalog, "schema_name": schema},
        )
        return list(body.get("tables", []))

    def get_table(self, full_name: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/2.1/unity-catalog/tables/{_q(full_name)}"))

    def statement(self, text: str, *, timeout_s: float = 300) -> tuple[list[str], list[list[Any]]]:
        """Run one statement through the Statement Execution API; column names and rows
        (JSON_ARRAY: every value a string or null). Polls until it is done."""
        body = self.request(
            "POST", "/api/2.0/sql/statements", json={"statement": text, "wait_timeout": "30s"}
        )
        deadline = time.monotonic() + timeout_s
        while body["status"]["state"] in ("PENDING", "RUNNING"):
            if time.monotonic() > deadline:
                self.request("POST", f"/api/2.0/sql/statements/{body['statement_id']}/cancel")
                raise errors.DeadlineExceeded("The statement did not finish in time.")
            time.sleep(0.2)
            body = self.request("GET", f"/api/2.0/sql/statements/{body['statement_id']}")
        error = body["status"].get("error")
        if error is not None:
            code = str(error.get("bastion_error_code") or error.get("error_code", ""))
            raise _BY_CODE.get(code, errors.BastionError)(str(error.get("message", "")))
        columns = [c["name"] for c in body["manifest"]["schema"]["columns"]]
        return columns, list(body.get("result", {}).get("data_array") or [])

    # -- audit --------------------------------------------------------------------------------

    def audit_events(
        self, *, action_name: str | None = None, user: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if action_name:
            params["action_name"] = action_name
        if user:
            params["user"] = user
        return list(self.request("GET", "/api/2.0/bastion/audit", params=params).get("events", []))
