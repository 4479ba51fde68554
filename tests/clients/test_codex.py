"""Codex CLI (`@openai/codex`), unchanged: `codex exec` with a custom Responses-API provider.

It sends ``client_metadata``, ``prompt_cache_key``, ``include``, ``store: false``,
``reasoning`` and hosted tools (``namespace``, ``web_search``) besides its function tools;
Bastion drops the hosted ones with a note in the payload row.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from clients.conftest import REPLY, USER, Deployment, isolated_env, npm_bin, payload_rows


def codex(deployment: Deployment, tmp_path: Path, prompt: str) -> str:
    """``codex exec PROMPT`` in ``tmp_path`` as the test user; its stdout."""
    codex_home = tmp_path / "codex"
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(
        f'model = "{deployment.openai_endpoint}"\n'
        'model_provider = "bastion"\n'
        "\n"
        "[model_providers.bastion]\n"
        'name = "Bastion"\n'
        f'base_url = "{deployment.server.url}/serving-endpoints"\n'
        'env_key = "BASTION_TOKEN"\n'
        'wire_api = "responses"\n'
    )
    env = isolated_env(
        tmp_path / "home", CODEX_HOME=str(codex_home), BASTION_TOKEN=deployment.token
    )
    done = subprocess.run(
        [str(npm_bin("codex")), "exec", "--skip-git-repo-check", prompt],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, f"codex failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.compat("codex", "`codex exec` (Responses API provider)")
def test_codex_exec_is_served_and_logged(deployment: Deployment, tmp_path: Path) -> None:
    out = codex(deployment, tmp_path, "Say hello from Codex.")
    assert REPLY in out
    rows = payload_rows(deployment.server, deployment.openai_endpoint)
    mine = [r for r in rows if "Say hello from Codex." in (r["request"] or "")]
    assert mine and mine[-1]["requester"] == USER and mine[-1]["status_code"] == "200"
    request = json.loads(mine[-1]["request"])
    assert "client_metadata" in request  # logged as sent
    notes = mine[-1]["logging_error_codes"]
    assert "HOSTED_TOOL_DROPPED:web_search" in notes


@pytest.mark.compat("codex", "tool round trip (`exec_command`)")
def test_codex_runs_the_command_the_model_asks_for(deployment: Deployment, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("The gate code is 4-4-0-2.\n")
    deployment.stub.tool_call = ("exec_command", {"cmd": "cat notes.txt"})
    try:
        out = codex(deployment, tmp_path, "What is the gate code?")
    finally:
        deployment.stub.tool_call = None
    assert REPLY in out and "4-4-0-2" in out
