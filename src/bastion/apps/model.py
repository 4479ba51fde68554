"""The app domain: names, states, scopes, resources and the records the store hands out."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bastion.errors import InvalidRequest
from bastion.identity.model import DEFAULT_SCOPES

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,28}[a-z0-9]$")
_RESOURCE_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")

#: Scopes an app may ask for its users' forwarded tokens. Databricks' names, and Bastion's own
#: for the APIs it adds (red-team scans, the audit API). Never token or identity management:
#: a forwarded token must not be able to mint a longer-lived credential.
USER_API_SCOPES = frozenset(
    {
        "sql",
        "serving.serving-endpoints",
        "model-serving",
        "catalog.catalogs:read",
        "catalog.schemas:read",
        "catalog.tables:read",
        "catalog.models:read",
        "redteam",
        "redteam:read",
        "access.audit:read",
    }
)


class ApplicationState(StrEnum):
    DEPLOYING = "DEPLOYING"
    RUNNING = "RUNNING"
    CRASHED = "CRASHED"
    UNAVAILABLE = "UNAVAILABLE"


class ComputeState(StrEnum):
    ACTIVE = "ACTIVE"
    STARTING = "STARTING"
    STOPPED = "STOPPED"
    ERROR = "ERROR"


class DeploymentState(StrEnum):
    IN_PROGRESS = "IN_PROGRESS"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


def validate_app_name(name: object) -> str:
    """Lower-case letters, digits and ``-``, 2-30 characters, starting with a letter."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidRequest(
            f"Invalid app name {name!r}: use 2-30 lower-case letters, digits or '-', starting "
            "with a letter and not ending with '-'."
        )
    return name


def validate_scopes(scopes: list[str] | None) -> tuple[str, ...]:
    """The requested user API scopes, checked against :data:`USER_API_SCOPES`."""
    out: list[str] = []
    for scope in scopes or []:
        if scope in DEFAULT_SCOPES:
            continue  # always granted; Databricks refuses them as requests, we just fold them
        if scope not in USER_API_SCOPES:
            allowed = ", ".join(sorted(USER_API_SCOPES))
            raise InvalidRequest(f"Unknown or disallowed user API scope {scope!r}; use: {allowed}.")
        if scope not in out:
            out.append(scope)
    return tuple(out)


def effective_scopes(scopes: tuple[str, ...]) -> tuple[str, ...]:
    """What a forwarded token carries: the requested scopes plus the ones always granted."""
    return tuple(sorted(set(scopes) | DEFAULT_SCOPES)) if scopes else ()


# -- resources (Databricks' ``AppResource``) ---------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServingEndpointResource(_Strict):
    name: str = Field(min_length=1, max_length=255)
    permission: Literal["CAN_QUERY", "CAN_VIEW", "CAN_MANAGE"] = "CAN_QUERY"


class UcSecurableResource(_Strict):
    securable_full_name: str = Field(min_length=1, max_length=767)
    securable_type: Literal["TABLE", "VOLUME", "FUNCTION"] = "TABLE"
    permission: Literal["SELECT", "MODIFY", "EXECUTE", "READ_VOLUME", "WRITE_VOLUME"] = "SELECT"


class SecretResource(_Strict):
    scope: str = Field(min_length=1, max_length=255)
    key: str = Field(min_length=1, max_length=255)
    permission: Literal["READ", "WRITE", "MANAGE"] = "READ"


class SqlWarehouseResource(_Strict):
    id: str = Field(min_length=1, max_length=255)
    permission: Literal["CAN_USE", "CAN_MANAGE", "IS_OWNER"] = "CAN_USE"


ResourceKind = Literal["serving_endpoint", "uc_securable", "secret", "sql_warehouse"]


class AppResource(_Strict):
    """One resource the app uses; declaring it grants that permission to the app's service
    principal, and ``env: valueFrom: <name>`` in ``app.yaml`` reads its value."""

    name: str = Field(min_length=1, max_length=128)
    description: str | None = Field(default=None, max_length=1000)
    serving_endpoint: ServingEndpointResource | None = None
    uc_securable: UcSecurableResource | None = None
    secret: SecretResource | None = None
    sql_warehouse: SqlWarehouseResource | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> AppResource:
        if not _RESOURCE_KEY.match(self.name):
            raise ValueError(f"invalid resource name {self.name!r}")
        given = [k for k in _KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"resource {self.name!r} needs exactly one of: {', '.join(_KINDS)} "
                f"(got {', '.join(given) or 'none'})"
            )
        return self

    @property
    def kind(self) -> ResourceKind:
        for key in _KINDS:
            if getattr(self, key) is not None:
                return key
        raise AssertionError("validated to have one kind")


_KINDS: tuple[ResourceKind, ...] = ("serving_endpoint", "uc_securable", "secret", "sql_warehouse")


def parse_resources(raw: list[dict[str, Any]] | None) -> list[AppResource]:
    resources = [AppResource.model_validate(r) for r in raw or []]
    names = [r.name for r in resources]
    if len(set(names)) != len(names):
        raise InvalidRequest("Resource names must be unique within an app.")
    return resources


# -- records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppRecord:
    id: int
    securable_id: int
    name: str
    description: str | None
    service_principal_id: int | None
    user_api_scopes: tuple[str, ...]
    resources: tuple[AppResource, ...]
    resources_set_by: int | None
    compute_desired: str
    active_deployment_id: str | None
    creator: str
    updater: str
    created_at: int
    updated_at: int

    @property
    def effective_user_api_scopes(self) -> tuple[str, ...]:
        return effective_scopes(self.user_api_scopes)


@dataclass(frozen=True)
class DeploymentRecord:
    id: str
    app_id: int
    source_code_path: str
    mode: str
    state: DeploymentState
    message: str | None
    command: tuple[str, ...]
    env: tuple[dict[str, str], ...]
    creator: str
    created_at: int
    updated_at: int
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
