"""Settings for coding agents: merged into the tools' own files without losing anything."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path

import pytest

from bastion.client import coding_agents as ca
from bastion.errors import InvalidRequest
from bastion.serving.control.bootstrap import DEFAULT_ENDPOINT

HOST = "http://127.0.0.1:8000"


def test_the_default_endpoint_is_the_one_bastion_up_serves() -> None:
    assert ca.DEFAULT_ENDPOINT == DEFAULT_ENDPOINT


def test_claude_settings_keep_other_keys_and_variables() -> None:
    existing = json.dumps(
        {
            "permissions": {"allow": ["Bash(make test)"]},
            "env": {"HTTPS_PROXY": "http://proxy:3128", "ANTHROPIC_API_KEY": "sk-ant-old"},
        }
    )
    env = ca.claude_code_env(HOST + "/", "bstp_x", "agent", small_endpoint="agent-small")
    merged = json.loads(ca.merge_claude_settings(existing, env))
    assert merged["permissions"] == {"allow": ["Bash(make test)"]}
    assert merged["env"]["HTTPS_PROXY"] == "http://proxy:3128"
    # an API key in the same file would win over the token: it goes
    assert "ANTHROPIC_API_KEY" not in merged["env"]
    assert merged["env"]["ANTHROPIC_BASE_URL"] == HOST + "/serving-endpoints/anthropic"
    assert merged["env"]["ANTHROPIC_AUTH_TOKEN"] == "bstp_x"
    assert {merged["env"][v] for v in ca.CLAUDE_MODEL_VARIABLES[:3]} == {"agent"}
    assert merged["env"]["ANTHROPIC_DEFAULT_HAIKU_MODEL"] == "agent-small"


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"env": "x"}'])
def test_broken_claude_settings_are_refused_not_overwritten(text: str) -> None:
    with pytest.raises(InvalidRequest, match="fix"):
        ca.merge_claude_settings(text, ca.claude_code_env(HOST, "t", "e"))


def test_codex_config_keeps_comments_profiles_and_other_providers() -> None:
    existing = """# my Codex settings
model = "gpt-5"  # the old default
approval_policy = "on-request"

[model_providers.ollama]
name = "Ollama"
base_url = "http://localhost:11434/v1"

[profiles.fast]
model = "gpt-5-mini"
"""
    merged = ca.merge_codex_config(existing, HOST, "bstp_y", "agent")
    assert merged.startswith("# my Codex settings") or "# my Codex settings" in merged
    parsed = tomllib.loads(merged)
    assert parsed["model"] == "agent" and parsed["model_provider"] == "bastion"
    assert parsed["approval_policy"] == "on-request"
    assert parsed["profiles"]["fast"]["model"] == "gpt-5-mini"
    assert parsed["model_providers"]["ollama"]["name"] == "Ollama"
    assert parsed["model_providers"]["bastion"] == {
        "name": "Bastion",
        "base_url": HOST + "/serving-endpoints",
        "wire_api": "responses",
        "experimental_bearer_token": "bstp_y",
    }
    # configuring again replaces, never duplicates
    again = tomllib.loads(ca.merge_codex_config(merged, HOST, "bstp_z", "other"))
    assert again["model"] == "other"
    assert again["model_providers"]["bastion"]["experimental_bearer_token"] == "bstp_z"


def test_codex_root_keys_land_before_tables_when_the_file_has_only_tables() -> None:
    merged = ca.merge_codex_config('[profiles.a]\nmodel = "m"\n', HOST, "t", "agent")
    parsed = tomllib.loads(merged)  # root keys after a table would belong to the table
    assert parsed["model"] == "agent" and parsed["profiles"]["a"] == {"model": "m"}


def test_broken_codex_config_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="not valid TOML"):
        ca.merge_codex_config("model = [", HOST, "t", "agent")
    with pytest.raises(InvalidRequest, match="not a table"):
        ca.merge_codex_config('model_providers = "x"\n', HOST, "t", "agent")


def test_settings_files_are_private_and_replaced_atomically(tmp_path: Path) -> None:
    target = tmp_path / "fresh" / "settings.json"
    ca.write_private(target, "{}\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    ca.write_private(target, '{"a": 1}\n')
    assert target.read_text() == '{"a": 1}\n'
    assert [p.name for p in target.parent.iterdir()] == ["settings.json"]


def test_paths_follow_the_tools_own_variables(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    assert ca.claude_settings_path(env) == tmp_path / ".claude" / "settings.json"
    assert ca.codex_config_path(env) == tmp_path / ".codex" / "config.toml"
    moved = {**env, "CLAUDE_CONFIG_DIR": "/etc/c", "CODEX_HOME": "/etc/x"}
    assert ca.claude_settings_path(moved) == Path("/etc/c/settings.json")
    assert ca.codex_config_path(moved) == Path("/etc/x/config.toml")


def test_module_examples() -> None:
    import doctest

    result = doctest.testmod(ca, raise_on_error=False)
    assert result.attempted and not result.failed
