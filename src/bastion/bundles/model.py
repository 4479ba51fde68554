"""The shape of ``bastion.yml``: ``databricks.yml``'s keys for what Bastion has, plus its own.

Every model forbids unknown keys, so a typo is an error with its path. Keys of
``databricks.yml`` that Bastion has no use for (``workspace.host``, ``run_as``, ``sync``, …)
are accepted and reported as warnings, so a real Databricks bundle loads unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Lifecycle(_Strict):
    prevent_destroy: bool = False
    started: bool | None = None


class Grant(_Strict):
    """A Unity Catalog grant on the resource (``grants: [{principal, privileges}]``)."""

    principal: str = Field(min_length=1, max_length=255)
    privileges: list[str] = Field(min_length=1)


class Permission(_Strict):
    """A workspace-object permission (endpoints, apps, secret scopes)."""

    level: str
    user_name: str | None = None
    group_name: str | None = None
    service_principal_name: str | None = None


class Variable(_Strict):
    description: str | None = None
    default: Any = None
    type: str | None = None
    lookup: dict[str, Any] | None = None


class Bundle(_Strict):
    name: str = Field(min_length=1, max_length=128)
    cluster_id: str | None = None
    git: dict[str, Any] | None = None
    databricks_cli_version: str | None = None
    deployment: dict[str, Any] | None = None
    uuid: str | None = None


class CurrentUser(_Strict):
    userName: str | None = None
    short_name: str | None = None


class Workspace(_Strict):
    host: str | None = None
    profile: str | None = None
    root_path: str | None = None
    file_path: str | None = None
    artifact_path: str | None = None
    state_path: str | None = None
    current_user: CurrentUser | None = None


class CatalogResource(_Strict):
    name: str
    comment: str | None = None
    properties: dict[str, str] | None = None
    grants: list[Grant] = Field(default_factory=list)
    lifecycle: Lifecycle = Field(default_factory=Lifecycle)


class SchemaResource(_Strict):
    name: str
    catalog_name: str
    comment: str | None = None
    properties: dict[str, str] | None = None
    grants: list[Grant] = Field(default_factory=list)
    lifecycle: Lifecycle = Field(default_factory=Lifecycle)


class Alias(_Strict):
    alias_name: str
    version_num: int = Field(ge=1)


class ModelVersionSource(_Strict):
    """A version Bastion registers from this bundle (Bastion's addition to DAB).

    Exactly one of: ``source`` (a GGUF file or MLflow model folder, relative to the bundle),
    ``agent_code`` (a Python file defining an MLflow models-from-code agent, saved as an MLflow
    model at deploy), or ``external_model`` (a provider config with a secret reference).
    A new version is registered when its content changes; unchanged, it is left as it is.
    """

    source: str | None = None
    agent_code: str | None = None
    external_model: dict[str, Any] | None = None
    comment: str | None = None
    tags: dict[str, str] | None = None


class RegisteredModelResource(_Strict):
    name: str
    catalog_name: str
    schema_name: str
    comment: str | None = None
    storage_location: str | None = None
    versions: list[ModelVersionSource] = Field(default_factory=list)
    aliases: list[Alias] = Field(default_factory=list)
    grants: list[Grant] = Field(default_factory=list)
    tags: list[dict[str, str]] | None = None
    lifecycle: Lifecycle = Field(default_factory=Lifecycle)


class EndpointResource(_Strict):
    name: str
    config: dict[str, Any]
    ai_gateway: dict[str, Any] | None = None
    tags: list[dict[str, Any]] | None = None
    description: str | None = None
    rate_limits: list[dict[str, Any]] | None = None
    route_optimized: bool | None = None
    budget_policy_id: str | None = None
    email_notifications: dict[str, Any] | None = None
    telemetry_config: dict[str, Any] | None = None
    permissions: list[Permission] = Field(default_factory=list)
    lifecycle: Lifecycle = Field(default_factory=Lifecycle)


class SecretScopeResource(_Strict):
    name: str
    backend_type: str | None = None
    keyvault_metadata: dict[str, Any] | None = None
    permissions: list[Permission] = Field(default_factory=list)
    lifecycle: Lifecycle = Field(default_factory=Lifecycle)


class GrantResource(_Strict):
    """Bastion's own: grants on any securable (``resources.grants.<key>``)."""

    securable_type: str
    full_name: str
    principal: str
    privileges: list[str] = Field(min_length=1)
    lifecycle: Lifecycle = Field(default_factory=Lifecycle)


class ViewResource(_Strict):
    """Bastion's own: a view (``CREATE OR REPLACE VIEW``), owned by the deployer."""

    name: str
    catalog_name: str
    schema_name: str
    query: str
    comment: str | None = None
    grants: list[Grant] = Field(default_factory=list)
    lifecycle: Lifecycle = Field(default_factory=Lifecycle)


class FunctionResource(_Strict):
    """Bastion's own: a SQL function (``CREATE OR REPLACE FUNCTION … RETURN …``)."""

    name: str
    catalog_name: str
    schema_name: str
    parameters: str = ""  # e.g. "region STRING"
    returns: str  # e.g. "BOOLEAN"
    body: str  # the expression after RETURN
    comment: str | None = None
    grants: list[Grant] = Field(default_factory=list)
    lifecycle: Lifecycle = Field(default_factory=Lifecycle)


class RedTeamScanResource(_Strict):
    """Bastion's own: a red-team scan run at deploy, failing the deploy over its gate."""

    endpoint: str
    risk_categories: list[str] | str | None = None
    strategies: list[str] | str | None = None
    num_objectives: int | None = Field(default=None, ge=1, le=100)
    judge: str | None = None
    judge_endpoint: str | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    concurrency: int | None = Field(default=None, ge=1, le=64)
    threshold: int | None = Field(default=None, ge=0, le=7)
    fail_over_asr: float | None = Field(default=None, ge=0, le=100)
    seed: int | None = None
    lifecycle: Lifecycle = Field(default_factory=Lifecycle)


class AppEnv(_Strict):
    """One variable of an app's environment: a literal ``value``, or ``value_from`` (also
    spelled ``valueFrom``, as in ``app.yaml``) naming one of the app's resources."""

    name: str = Field(min_length=1, max_length=255)
    value: str | None = None
    value_from: str | None = Field(
        default=None, validation_alias=AliasChoices("value_from", "valueFrom")
    )


class AppConfig(_Strict):
    """``app.yaml`` inline: written into the deployed source, replacing the folder's own."""

    command: list[str] = Field(min_length=1)
    env: list[AppEnv] = Field(default_factory=list)


class AppBundleResource(_Strict):
    """An app (``resources.apps.<key>``): its definition, its source folder, who may use it.

    As in Databricks, the app is deployed from ``source_code_path`` and started only with
    ``lifecycle.started: true``; otherwise it is created (or updated) and left stopped.
    """

    name: str
    description: str | None = None
    source_code_path: str
    config: AppConfig | None = None
    resources: list[dict[str, Any]] = Field(default_factory=list)
    user_api_scopes: list[str] = Field(default_factory=list)
    permissions: list[Permission] = Field(default_factory=list)
    compute_size: str | None = None
    budget_policy_id: str | None = None
    lifecycle: Lifecycle = Field(default_factory=Lifecycle)


class Resources(_Strict):
    catalogs: dict[str, CatalogResource] = Field(default_factory=dict)
    schemas: dict[str, SchemaResource] = Field(default_factory=dict)
    registered_models: dict[str, RegisteredModelResource] = Field(default_factory=dict)
    model_serving_endpoints: dict[str, EndpointResource] = Field(default_factory=dict)
    secret_scopes: dict[str, SecretScopeResource] = Field(default_factory=dict)
    grants: dict[str, GrantResource] = Field(default_factory=dict)
    views: dict[str, ViewResource] = Field(default_factory=dict)
    functions: dict[str, FunctionResource] = Field(default_factory=dict)
    redteam_scans: dict[str, RedTeamScanResource] = Field(default_factory=dict)
    apps: dict[str, AppBundleResource] = Field(default_factory=dict)


class Presets(_Strict):
    name_prefix: str | None = None
    tags: dict[str, str] | None = None
    trigger_pause_status: str | None = None
    jobs_max_concurrent_runs: int | None = None
    pipelines_development: bool | None = None
    source_linked_deployment: bool | None = None


class Target(_Strict):
    mode: Literal["development", "production"] | None = None
    default: bool = False
    workspace: Workspace | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    resources: dict[str, dict[str, Any]] | None = None
    permissions: list[Permission] | None = None
    presets: Presets | None = None
    run_as: dict[str, Any] | None = None
    git: dict[str, Any] | None = None
    sync: dict[str, Any] | None = None
    artifacts: dict[str, Any] | None = None
    cluster_id: str | None = None
    compute_id: str | None = None
    bundle: dict[str, Any] | None = None


class BundleFile(_Strict):
    """One parsed ``bastion.yml`` / ``databricks.yml`` (before targets are applied)."""

    bundle: Bundle
    include: list[str] = Field(default_factory=list)
    variables: dict[str, Variable] = Field(default_factory=dict)
    workspace: Workspace | None = None
    permissions: list[Permission] = Field(default_factory=list)
    presets: Presets | None = None
    resources: Resources = Field(default_factory=Resources)
    targets: dict[str, Target] = Field(default_factory=dict)
    artifacts: dict[str, Any] | None = None
    sync: dict[str, Any] | None = None
    run_as: dict[str, Any] | None = None
    scripts: dict[str, Any] | None = None
    python: dict[str, Any] | None = None
    experimental: dict[str, Any] | None = None


def json_schema() -> dict[str, Any]:
    """The JSON Schema of ``bastion.yml`` (``bastion bundle schema``), for editors."""
    schema = BundleFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "bastion.yml"
    return schema
