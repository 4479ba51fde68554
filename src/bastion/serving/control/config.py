"""Endpoint configuration in Databricks' shape, and its validation.

``validate_core_config`` checks a ``config`` block for a caller and returns it normalised
(default entity names filled in, external keys as references, traffic always explicit), so
that what is stored is exactly what the router serves.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from bastion.egress import policy_of, require_egress
from bastion.errors import InvalidRequest, NotFound, PermissionDenied
from bastion.fields import NonNegativeInt32, parse_id
from bastion.governance.privileges import Privilege
from bastion.governance.securables import (
    SecurableType,
    derived_part,
    parse_name,
    validate_part,
)
from bastion.identity.model import Caller
from bastion.registry import VersionStatus, load_version, parse_external_model, validate_alias
from bastion.secrets import parse_reference
from bastion.secrets.references import is_reference
from bastion.secrets.usage import require_secret_use
from bastion.serving.budgets import parse_budgets
from bastion.serving.guardrails import parse_guardrails
from bastion.serving.limits import parse_rate_limits

if TYPE_CHECKING:
    from bastion.platform import Platform

MAX_ENTITIES = 10
_ENTITY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,62}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServedEntityInput(_Strict):
    name: str | None = None
    entity_name: str | None = None
    entity_version: str | int | None = None
    external_model: dict[str, Any] | None = None
    workload_size: str | None = None
    workload_type: str | None = None
    scale_to_zero_enabled: bool | None = None
    environment_vars: dict[str, str] | None = None
    min_provisioned_concurrency: NonNegativeInt32 | None = None
    max_provisioned_concurrency: NonNegativeInt32 | None = None
    min_provisioned_throughput: NonNegativeInt32 | None = None
    max_provisioned_throughput: NonNegativeInt32 | None = None
    request_timeout_s: float | None = Field(default=None, gt=0, le=3600)


class ServedModelInput(_Strict):
    """Deprecated ``served_models`` entry; converted to a served entity."""

    name: str | None = None
    model_name: str
    model_version: str | int
    workload_size: str | None = None
    scale_to_zero_enabled: bool | None = None
    environment_vars: dict[str, str] | None = None


class Route(_Strict):
    served_entity_name: str | None = None
    served_model_name: str | None = None
    traffic_percentage: int = Field(ge=0, le=100)


class TrafficConfig(_Strict):
    routes: list[Route] = Field(default_factory=list, max_length=MAX_ENTITIES)


class AutoCaptureConfig(_Strict):
    catalog_name: str | None = None
    schema_name: str | None = None
    table_name_prefix: str | None = None
    enabled: bool | None = None


class EndpointCoreConfig(_Strict):
    #: The endpoint's name, which databricks-sdk's ``EndpointCoreConfigInput`` may repeat here.
    name: str | None = Field(default=None, max_length=255)
    served_entities: list[ServedEntityInput] = Field(default_factory=list)
    served_models: list[ServedModelInput] = Field(default_factory=list)
    traffic_config: TrafficConfig | None = None
    auto_capture_config: AutoCaptureConfig | None = None


class InferenceTableConfig(_Strict):
    enabled: bool = False
    catalog_name: str | None = None
    schema_name: str | None = None
    table_name_prefix: str | None = None


class FallbackConfig(_Strict):
    enabled: bool = False


class AiGatewayConfig(_Strict):
    usage_tracking_config: dict[str, Any] | None = None
    inference_table_config: InferenceTableConfig | None = None
    rate_limits: list[dict[str, Any]] | None = None
    guardrails: dict[str, Any] | None = None
    fallback_config: FallbackConfig | None = None
    budgets: list[Any] | None = None
    pricing: list[Any] | None = None


class EndpointTag(_Strict):
    key: str = Field(min_length=1, max_length=255)
    value: str | None = Field(default=None, max_length=1000)


def _default_entity_name(entity: ServedEntityInput) -> str:
    if entity.external_model is not None:
        raw = str(entity.external_model.get("name", "external"))
    else:
        model = str(entity.entity_name or "model").rsplit(".", 1)[-1]
        raw = f"{model}-{str(entity.entity_version or '').lstrip('@')}"
    return re.sub(r"[^A-Za-z0-9_\-]", "-", raw)[:63]


def _check_secret_refs(platform: Platform, caller: Caller, values: dict[str, str]) -> None:
    for value in values.values():
        if is_reference(value):
            require_secret_use(platform, caller, parse_reference(value))


def _entity(platform: Platform, caller: Caller, entity: ServedEntityInput) -> dict[str, Any]:
    name = entity.name or _default_entity_name(entity)
    if not _ENTITY_NAME.match(name):
        raise InvalidRequest(
            f"Invalid served entity name {name!r}: use up to 63 letters, digits, '_' or '-'."
        )
    out: dict[str, Any] = {"name": name}
    if entity.external_model is not None:
        if entity.entity_name is not None or entity.entity_version is not None:
            raise InvalidRequest(
                f"Served entity '{name}': give either 'external_model' or "
                "'entity_name' + 'entity_version', not both."
            )
        external = parse_external_model(entity.external_model)
        require_egress(platform, caller.is_admin, [external.base_url])
        if external.api_key is not None:
            require_secret_use(platform, caller, external.api_key)
        out["external_model"] = external.as_config()
    else:
        if not entity.entity_name or entity.entity_version in (None, ""):
            raise InvalidRequest(
                f"Served entity '{name}' needs 'entity_name' (catalog.schema.model) and "
                "'entity_version' (a version number or an @alias), or an 'external_model'."
            )
        model = parse_name(SecurableType.MODEL, entity.entity_name)
        version_text = str(entity.entity_version).strip()
        reference = (
            str(parse_id(version_text))
            if parse_id(version_text) is not None
            else "@" + validate_alias(version_text)
        )
        try:
            version = load_version(platform, caller, model, reference)
        except NotFound as exc:
            raise InvalidRequest(f"Served entity '{name}': {exc.message}") from None
        if version.status is not VersionStatus.READY:
            raise InvalidRequest(
                f"Served entity '{name}': version {version.version} of '{model}' is "
                f"{version.status.value}, not READY."
            )
        key = version.external_model.api_key if version.external_model else None
        if key is not None:  # serving the version puts its key reference into service
            require_secret_use(platform, caller, key)
        out["entity_name"] = model
        out["entity_version"] = reference
    for field in (
        "workload_size",
        "workload_type",
        "scale_to_zero_enabled",
        "min_provisioned_concurrency",
        "max_provisioned_concurrency",
        "min_provisioned_throughput",
        "max_provisioned_throughput",
        "request_timeout_s",
    ):
        value = getattr(entity, field)
        if value is not None:
            out[field] = value
    if entity.environment_vars:
        _check_secret_refs(platform, caller, entity.environment_vars)
        out["environment_vars"] = dict(entity.environment_vars)
    return out


def _traffic(config: EndpointCoreConfig, names: list[str]) -> dict[str, Any]:
    if config.traffic_config is None or not config.traffic_config.routes:
        share, rest = divmod(100, len(names))
        return {
            "routes": [
                {"served_entity_name": n, "traffic_percentage": share + (1 if i < rest else 0)}
                for i, n in enumerate(names)
            ]
        }
    routes: list[dict[str, Any]] = []
    seen: set[str] = set()
    for route in config.traffic_config.routes:
        target = route.served_entity_name or route.served_model_name
        if target not in names:
            raise InvalidRequest(
                f"Traffic route to unknown served entity {target!r}; "
                f"served entities are: {', '.join(names)}."
            )
        if target in seen:
            raise InvalidRequest(f"Served entity {target!r} has more than one traffic route.")
        seen.add(target)
        routes.append(
            {"served_entity_name": target, "traffic_percentage": route.traffic_percentage}
        )
    total = sum(r.traffic_percentage for r in config.traffic_config.routes)
    if total != 100:
        raise InvalidRequest(
            f"Traffic percentages must sum to 100; the routes given sum to {total}."
        )
    return {"routes": routes}


def validate_core_config(
    platform: Platform, caller: Caller, config: EndpointCoreConfig
) -> dict[str, Any]:
    """Check ``config`` for ``caller`` (EXECUTE on each model, READ on each secret scope)."""
    entities = list(config.served_entities)
    for legacy in config.served_models:
        entities.append(
            ServedEntityInput(
                name=legacy.name,
                entity_name=legacy.model_name,
                entity_version=legacy.model_version,
                workload_size=legacy.workload_size,
                scale_to_zero_enabled=legacy.scale_to_zero_enabled,
                environment_vars=legacy.environment_vars,
            )
        )
    if not entities:
        raise InvalidRequest("An endpoint config needs at least one served entity.")
    if len(entities) > MAX_ENTITIES:
        raise InvalidRequest(f"An endpoint may serve at most {MAX_ENTITIES} entities.")
    served = [_entity(platform, caller, e) for e in entities]
    names = [e["name"] for e in served]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidRequest(f"Served entity names must be unique; repeated: {duplicates}.")
    out: dict[str, Any] = {"served_entities": served, "traffic_config": _traffic(config, names)}
    if config.auto_capture_config is not None:
        out["auto_capture_config"] = config.auto_capture_config.model_dump(exclude_none=True)
    return out


def validate_ai_gateway(
    platform: Platform, caller: Caller, endpoint_name: str, gateway: AiGatewayConfig | None
) -> dict[str, Any]:
    """Check the ``ai_gateway`` block; an inference table needs CREATE TABLE on its schema."""
    if gateway is None:
        return {}
    out = gateway.model_dump(exclude_none=True)
    parse_guardrails(gateway.guardrails)  # InvalidRequest, with what to fix
    parse_rate_limits(gateway.rate_limits)
    budgets = parse_budgets(gateway.budgets, gateway.pricing)
    for budget in budgets.budgets if budgets is not None else ():
        if budget.webhook is not None:
            # Alerts are sent from inside the network: the egress policy holds for everyone.
            policy_of(platform).check_url(budget.webhook.url)
            if budget.webhook.secret is not None:
                require_secret_use(
                    platform, caller, parse_reference(budget.webhook.secret, "webhook secret")
                )
    table = gateway.inference_table_config
    if table is not None and table.enabled:
        if not table.catalog_name or not table.schema_name:
            raise InvalidRequest(
                "'inference_table_config' needs 'catalog_name' and 'schema_name' when enabled."
            )
        schema = parse_name(SecurableType.SCHEMA, f"{table.catalog_name}.{table.schema_name}")
        prefix = (
            validate_part(table.table_name_prefix, "table name prefix")
            if table.table_name_prefix
            else derived_part(endpoint_name)
        )
        try:
            platform.authorizer.require(
                caller, Privilege.CREATE_TABLE, SecurableType.SCHEMA, schema
            )
        except NotFound as exc:
            raise InvalidRequest(f"Inference table location: {exc.message}") from None
        except PermissionDenied as exc:
            raise PermissionDenied(
                f"{exc.message} An inference table needs USE CATALOG, USE SCHEMA and "
                "CREATE TABLE on its schema."
            ) from None
        catalog, schema_name = schema.split(".")
        out["inference_table_config"] = {
            "enabled": True,
            "catalog_name": catalog,
            "schema_name": schema_name,
            "table_name_prefix": prefix,
        }
    return out
