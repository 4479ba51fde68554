"""External-model configs (Databricks ``external_model`` shape): provider, model, base URL, key.

The API key is only ever a secret reference (``{{secrets/<scope>/<key>}}``); plaintext keys
are refused so that no config, version or endpoint response can carry one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from bastion.errors import InvalidRequest
from bastion.secrets.references import SecretReference, parse_reference

ProviderKind = Literal["openai", "anthropic"]

DEFAULT_BASES: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}
# Provider names accepted, and the wire protocol each one speaks.
PROVIDERS: dict[str, ProviderKind] = {
    "openai": "openai",
    "openai-compatible": "openai",
    "custom": "openai",
    "anthropic": "anthropic",
}


@dataclass(frozen=True)
class ExternalModel:
    """A validated external model: where to call, which model, and which secret holds the key."""

    provider: str
    kind: ProviderKind
    name: str
    base_url: str
    api_key: SecretReference | None
    task: str = "llm/v1/chat"

    def as_config(self) -> dict[str, Any]:
        """The Databricks-shaped config, with the key as its reference (safe to return)."""
        key = str(self.api_key) if self.api_key else None
        config: dict[str, Any] = {"provider": self.provider, "name": self.name, "task": self.task}
        if self.kind == "anthropic":
            config["anthropic_config"] = {
                "anthropic_api_key": key,
                "anthropic_api_base": self.base_url,
            }
        elif self.provider == "custom":
            config["custom_provider_config"] = {
                "custom_provider_url": self.base_url,
                **({"bearer_token_auth": {"token": key}} if key else {}),
            }
        else:
            config["openai_config"] = {"openai_api_key": key, "openai_api_base": self.base_url}
        return config


def _plaintext_refused(section: dict[str, Any], name: str) -> None:
    for field in section:
        if field.endswith("_plaintext"):
            raise InvalidRequest(
                f"'{name}.{field}' is not accepted: keep the key in a secret scope and use "
                f"a reference like {{{{secrets/<scope>/<key>}}}}."
            )


def parse_external_model(raw: Any) -> ExternalModel:
    """Validate an ``external_model`` block.

    >>> parse_external_model({"provider": "openai", "name": "gpt-4o",
    ...     "openai_config": {"openai_api_key": "{{secrets/llm/openai}}"}}).base_url
    'https://api.openai.com/v1'
    """
    if not isinstance(raw, dict):
        raise InvalidRequest("'external_model' must be an object.")
    provider = str(raw.get("provider", "")).strip().lower()
    kind = PROVIDERS.get(provider)
    if kind is None:
        raise InvalidRequest(
            f"Unsupported external model provider {raw.get('provider')!r}; "
            f"use one of: {', '.join(PROVIDERS)}."
        )
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("'external_model.name' (the provider's model name) is required.")
    task = raw.get("task") or "llm/v1/chat"
    known = {
        "provider",
        "name",
        "task",
        "openai_config",
        "anthropic_config",
        "custom_provider_config",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InvalidRequest(f"Unknown field(s) in 'external_model': {', '.join(unknown)}.")
    key_text: Any = None
    base: Any = None
    if kind == "anthropic":
        section = raw.get("anthropic_config") or {}
        _plaintext_refused(section, "anthropic_config")
        key_text, base = section.get("anthropic_api_key"), section.get("anthropic_api_base")
    elif provider == "custom":
        section = raw.get("custom_provider_config") or {}
        _plaintext_refused(section, "custom_provider_config")
        base = section.get("custom_provider_url")
        auth = section.get("bearer_token_auth") or section.get("api_key_auth") or {}
        _plaintext_refused(auth, "custom_provider_config.bearer_token_auth")
        key_text = auth.get("token") or auth.get("value")
        if not base:
            raise InvalidRequest("'custom_provider_config.custom_provider_url' is required.")
    else:
        section = raw.get("openai_config") or {}
        _plaintext_refused(section, "openai_config")
        key_text, base = section.get("openai_api_key"), section.get("openai_api_base")
    base_url = str(base or DEFAULT_BASES[kind]).rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise InvalidRequest(f"The external model base URL {base_url!r} must be http(s).")
    api_key = parse_reference(key_text, "external model API key") if key_text else None
    return ExternalModel(provider, kind, name.strip(), base_url, api_key, str(task))
