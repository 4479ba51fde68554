"""Point coding agents (Claude Code, Codex) at a Bastion serving endpoint.

Both tools keep their settings in a file under the user's home; this module builds the part
that sends their traffic through Bastion and merges it into whatever the file already holds,
leaving every other setting (and, for Codex's TOML, every comment) as it was.

- Claude Code reads ``env`` from ``$CLAUDE_CONFIG_DIR/settings.json`` (``~/.claude``): the
  Anthropic Messages API at ``{host}/serving-endpoints/anthropic``, a bearer token, and the
  endpoint as every model Claude Code picks (main, Opus, Sonnet, Haiku / background).
- Codex reads ``$CODEX_HOME/config.toml`` (``~/.codex``): a ``[model_providers.bastion]``
  speaking the Responses API at ``{host}/serving-endpoints``, selected by ``model_provider``.

>>> env = claude_code_env("http://127.0.0.1:8000", "dapi…", "agent")
>>> env["ANTHROPIC_BASE_URL"], env["ANTHROPIC_MODEL"], env["ANTHROPIC_DEFAULT_HAIKU_MODEL"]
('http://127.0.0.1:8000/serving-endpoints/anthropic', 'agent', 'agent')
>>> print(merge_codex_config("", "http://127.0.0.1:8000", "dapi…", "agent").strip())
model = "agent"
model_provider = "bastion"
<BLANKLINE>
[model_providers.bastion]
name = "Bastion"
base_url = "http://127.0.0.1:8000/serving-endpoints"
wire_api = "responses"
experimental_bearer_token = "dapi…"
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bastion.errors import InvalidRequest

TOOLS = ("claude-code", "codex")
DEFAULT_ENDPOINT = "smollm2"  # the endpoint ``bastion up`` serves (serving.control.bootstrap)
SERVING_SCOPE = "model-serving"  # query serving endpoints, nothing else
PROVIDER_ID = "bastion"
# Variables this module owns in Claude Code's ``env``: rewritten on every configure.
CLAUDE_MODEL_VARIABLES = (
    "ANTHROPIC_MODEL",
    "ANTHROPIC_DEFAULT_OPUS_MODEL",
    "ANTHROPIC_DEFAULT_SONNET_MODEL",
    "ANTHROPIC_DEFAULT_HAIKU_MODEL",
)


def token_comment(tool: str, machine: str) -> str:
    """The comment of the token minted for ``tool`` on ``machine`` (re-configuring replaces
    the token with this comment, so one machine holds one live token per tool)."""
    return f"bastion agents configure {tool} on {machine}"


def claude_settings_path(environ: Mapping[str, str] = os.environ) -> Path:
    base = environ.get("CLAUDE_CONFIG_DIR") or str(Path(environ.get("HOME", "~")) / ".claude")
    return Path(base).expanduser() / "settings.json"


def codex_config_path(environ: Mapping[str, str] = os.environ) -> Path:
    base = environ.get("CODEX_HOME") or str(Path(environ.get("HOME", "~")) / ".codex")
    return Path(base).expanduser() / "config.toml"


def claude_code_env(
    host: str, token: str, endpoint: str, *, small_endpoint: str | None = None
) -> dict[str, str]:
    """Claude Code's ``env``: every model it may choose is a Bastion endpoint, so no request
    leaves through another route; ``small_endpoint`` serves the Haiku/background requests."""
    return {
        "ANTHROPIC_BASE_URL": f"{host.rstrip('/')}/serving-endpoints/anthropic",
        "ANTHROPIC_AUTH_TOKEN": token,
        "ANTHROPIC_MODEL": endpoint,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": endpoint,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": endpoint,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": small_endpoint or endpoint,
        # No telemetry, error reporting or update checks to third parties: only the gateway.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }


def merge_claude_settings(existing: str | None, env: Mapping[str, str]) -> str:
    """``settings.json`` with ``env`` merged in (other keys and other variables kept)."""
    settings = _json_object(existing, "Claude Code settings")
    current = settings.get("env")
    if current is None:
        current = {}
    if not isinstance(current, dict):
        raise InvalidRequest("Claude Code settings: 'env' is not an object; fix it by hand.")
    # A key that would override ours from the same file (an API key wins over the token).
    current.pop("ANTHROPIC_API_KEY", None)
    current.update(env)
    settings["env"] = current
    return json.dumps(settings, indent=2, ensure_ascii=False) + "\n"


def merge_codex_config(existing: str | None, host: str, token: str, endpoint: str) -> str:
    """``config.toml`` with the Bastion provider selected (comments and other keys kept)."""
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    try:
        document = tomlkit.parse(existing or "")
    except TOMLKitError as exc:
        raise InvalidRequest(f"Codex config is not valid TOML ({exc}); fix it by hand.") from None
    provider = tomlkit.table()
    provider["name"] = "Bastion"
    provider["base_url"] = f"{host.rstrip('/')}/serving-endpoints"
    provider["wire_api"] = "responses"
    provider["experimental_bearer_token"] = token
    # tomlkit puts a new root key before the first table, where TOML needs it.
    document["model"] = endpoint
    document["model_provider"] = PROVIDER_ID
    providers = document.get("model_providers")
    if providers is None:
        providers = tomlkit.table(is_super_table=True)
        document.add(tomlkit.nl())
        document["model_providers"] = providers
    elif not isinstance(providers, dict):
        raise InvalidRequest("Codex config: 'model_providers' is not a table; fix it by hand.")
    providers[PROVIDER_ID] = provider
    return tomlkit.dumps(document)


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, readable only by its owner (it holds a
    token); the directory is created owner-only when missing."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _json_object(text: str | None, what: str) -> dict[str, Any]:
    if not text or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidRequest(f"{what} are not valid JSON ({exc}); fix them by hand.") from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{what} are not a JSON object; fix them by hand.")
    return value
