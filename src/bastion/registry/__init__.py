"""Registered models ``catalog.schema.model``: immutable versions, tags and ``@aliases``.

A version's artifact is a GGUF file, an MLflow model directory, or an external-model config
(:mod:`bastion.registry.external`). Loading a version needs ``EXECUTE`` on the model
(:func:`load_version`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.governance.privileges import Privilege
from bastion.governance.securables import SecurableType, parse_name
from bastion.identity.model import Caller
from bastion.registry.artifacts import ArtifactKind, ArtifactLimits
from bastion.registry.external import ExternalModel, parse_external_model
from bastion.registry.store import (
    ModelRegistry,
    ModelVersion,
    RegisteredModel,
    VersionStatus,
    validate_alias,
)

if TYPE_CHECKING:
    from bastion.platform import Platform

__all__ = [
    "ArtifactKind",
    "ExternalModel",
    "ModelRegistry",
    "ModelVersion",
    "RegisteredModel",
    "VersionStatus",
    "load_version",
    "parse_external_model",
    "registry_of",
    "validate_alias",
]


def registry_of(platform: Platform) -> ModelRegistry:
    """The platform's registry (``platform.registry``), created on first use if not wired."""
    registry = getattr(platform, "registry", None)
    if isinstance(registry, ModelRegistry):
        return registry
    registry = ModelRegistry(
        platform.metastore,
        platform.governance,
        platform.clock,
        platform.settings.home / "artifacts",
        ArtifactLimits(platform.settings.max_artifact_bytes, platform.settings.max_artifact_files),
    )
    platform.registry = registry  # type: ignore[attr-defined]
    return registry


def load_version(
    platform: Platform, caller: Caller, model_name: str, version_or_alias: str | int
) -> ModelVersion:
    """Resolve ``model_name`` at a version or ``@alias`` for ``caller``, who needs EXECUTE.

    >>> load_version(platform, caller, "main.default.kyoto_agent", "@champion").version
    3
    """
    name = parse_name(SecurableType.MODEL, model_name)
    platform.authorizer.require(caller, Privilege.EXECUTE, SecurableType.MODEL, name)
    return registry_of(platform).resolve(name, version_or_alias)
