"""``bastion.agents.deploy``: serve a registered model version in one call, as
``databricks.agents.deploy`` does.

>>> from bastion import agents
>>> deployment = agents.deploy("main.default.kyoto_agent", model_version=3, tags={"team": "kyoto"})
>>> deployment.endpoint_name, deployment.query_endpoint
('agents_main-default-kyoto_agent', 'http://127.0.0.1:8000/serving-endpoints/agents_main-default-kyoto_agent/invocations')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bastion.client import BastionClient
from bastion.errors import NotFound
from bastion.governance.securables import derived_part


@dataclass(frozen=True)
class Deployment:
    endpoint_name: str
    model_name: str
    model_version: str
    query_endpoint: str
    endpoint: dict[str, Any] = field(repr=False)
    created: bool = False

    @property
    def payload_table(self) -> str | None:
        """``catalog.schema.<prefix>_payload``, where requests and responses are logged."""
        table = (self.endpoint.get("ai_gateway") or {}).get("inference_table_config") or {}
        if not table.get("enabled"):
            return None
        return (
            f"{table['catalog_name']}.{table['schema_name']}.{table['table_name_prefix']}_payload"
        )


def endpoint_name_for(model_name: str) -> str:
    """The endpoint Databricks would name for a UC model: ``agents_<catalog>-<schema>-<model>``."""
    return "agents_" + model_name.replace(".", "-")


def deploy(
    model_name: str,
    model_version: int | str,
    *,
    endpoint_name: str | None = None,
    tags: dict[str, str] | None = None,
    environment_vars: dict[str, str] | None = None,
    scale_to_zero_enabled: bool = True,
    client: BastionClient | None = None,
) -> Deployment:
    """Create or update the endpoint for ``model_name`` so that it serves ``model_version``
    (a number or an ``@alias``) with its payload table ``<catalog>.<schema>.<model>_payload``
    enabled. Needs EXECUTE on the model and CREATE TABLE on its schema (and CAN_MANAGE on an
    existing endpoint). Uses the active profile unless ``client`` is given.
    """
    own = client is None
    http = client or BastionClient.from_profile()
    try:
        return _deploy(
            http,
            model_name,
            str(model_version),
            endpoint_name or endpoint_name_for(model_name),
            tags or {},
            environment_vars,
            scale_to_zero_enabled,
        )
    finally:
        if own:
            http.close()


def _deploy(
    http: BastionClient,
    model_name: str,
    version: str,
    name: str,
    tags: dict[str, str],
    environment_vars: dict[str, str] | None,
    scale_to_zero_enabled: bool,
) -> Deployment:
    catalog, schema, short = model_name.split(".")
    entity: dict[str, Any] = {
        "name": f"{short}-{version.lstrip('@')}",
        "entity_name": model_name,
        "entity_version": version,
        "scale_to_zero_enabled": scale_to_zero_enabled,
    }
    if environment_vars:
        entity["environment_vars"] = environment_vars
    config = {"served_entities": [entity]}
    table = {
        "enabled": True,
        "catalog_name": catalog,
        "schema_name": schema,
        "table_name_prefix": derived_part(short),
    }
    path = f"/api/2.0/serving-endpoints/{name}"
    tag_list = [{"key": k, "value": v} for k, v in tags.items()]
    try:
        existing = http.request("GET", path)
    except NotFound:
        existing = None
    if existing is None:
        endpoint = http.request(
            "POST",
            "/api/2.0/serving-endpoints",
            json={
                "name": name,
                "config": config,
                "ai_gateway": {"inference_table_config": table},
                "tags": tag_list,
            },
        )
        created = True
    else:
        http.request("PUT", f"{path}/config", json=config)
        gateway = dict(existing.get("ai_gateway") or {})
        gateway["inference_table_config"] = table
        http.request("PUT", f"{path}/ai-gateway", json=gateway)
        if tag_list:
            http.request("PATCH", f"{path}/tags", json={"add_tags": tag_list})
        endpoint = http.request("GET", path)
        created = False
    return Deployment(
        endpoint_name=name,
        model_name=model_name,
        model_version=version,
        query_endpoint=f"{http.host}/serving-endpoints/{name}/invocations",
        endpoint=dict(endpoint),
        created=created,
    )
