"""The real CLIs, configured only by ``bastion agents configure TOOL --write``.

Nothing but the files the command writes points the tool at Bastion: no ``ANTHROPIC_*`` or
provider variables in the environment, a fresh ``HOME``. The request must arrive through the
endpoint with the dedicated token the command minted, and be logged with the user as requester.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clients.conftest import REPLY, USER, Deployment, isolated_env, npm_bin, payload_rows


def configure(deployment: Deployment, home: Path, tool: str) -> None:
    """``bastion agents configure TOOL --endpoint E --write`` as the test user."""
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if k not in ("CLAUDE_CONFIG_DIR", "CODEX_HOME") and not k.startswith("ANTHROPIC_")
        },
        "HOME": str(home),
        "BASTION_HOST": deployment.server.url,
        "BASTION_TOKEN": deployment.token,
        "BASTION_CONFIG_FILE": str(home / "bastion-config"),
    }
    endpoint = ("--endpoint", deployment.openai_endpoint, "--write")
    done = subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", "agents", "configure", tool, *endpoint],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    # The token it minted is in the file, never the user's own.
    written = (home / ".claude" / "settings.json") if tool == "claude-code" else None
    if written is not None:
        assert deployment.token not in written.read_text()


def run_cli(args: list[str], home: Path, cwd: Path) -> str:
    env = isolated_env(
        home,
        DISABLE_TELEMETRY="1",
        DISABLE_ERROR_REPORTING="1",
        DISABLE_AUTOUPDATER="1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
    )
    done = subprocess.run(
        args,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, f"{args[0]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def my_row(deployment: Deployment, prompt: str) -> dict[str, str]:
    rows = payload_rows(deployment.server, deployment.openai_endpoint)
    mine = [r for r in rows if prompt in (r["request"] or "")]
    assert mine, f"no payload row holds {prompt!r}"
    return mine[-1]


@pytest.mark.compat("claude-code", "configured by `bastion agents configure claude-code --write`")
def test_claude_code_configured_by_bastion(deployment: Deployment, tmp_path: Path) -> None:
    home = tmp_path / "home"
    configure(deployment, home, "claude-code")
    settings = json.loads((home / ".claude" / "settings.json").read_text())
    assert settings["env"]["ANTHROPIC_MODEL"] == deployment.openai_endpoint
    out = run_cli([str(npm_bin("claude")), "-p", "Hello via configured settings."], home, tmp_path)
    assert REPLY in out
    row = my_row(deployment, "Hello via configured settings.")
    assert row["requester"] == USER and row["status_code"] == "200"


@pytest.mark.compat("codex", "configured by `bastion agents configure codex --write`")
def test_codex_configured_by_bastion(deployment: Deployment, tmp_path: Path) -> None:
    home = tmp_path / "home"
    configure(deployment, home, "codex")
    assert 'model_provider = "bastion"' in (home / ".codex" / "config.toml").read_text()
    prompt = "Hello from a configured Codex."
    out = run_cli([str(npm_bin("codex")), "exec", "--skip-git-repo-check", prompt], home, tmp_path)
    assert REPLY in out
    row = my_row(deployment, prompt)
    assert row["requester"] == USER and row["status_code"] == "200"
