"""Claude Code (`@anthropic-ai/claude-code`), unchanged, in its default mode against Bastion.

It sends a system message inside ``messages`` (beta ``mid-conversation-system``), a dozen
tools, ``thinking``, ``context_management`` and ``output_config``; Bastion serves it from a
deterministic upstream (the embedded model's 2,048-token context cannot hold its prompt).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from clients.conftest import REPLY, USER, Deployment, isolated_env, npm_bin, payload_rows


def claude(deployment: Deployment, tmp_path: Path, endpoint: str, prompt: str) -> str:
    """``claude -p PROMPT`` in ``tmp_path`` as the test user; its stdout."""
    home = tmp_path / "home"
    env = isolated_env(
        home,
        CLAUDE_CONFIG_DIR=str(home / ".claude"),
        ANTHROPIC_BASE_URL=f"{deployment.server.url}/serving-endpoints/anthropic",
        ANTHROPIC_AUTH_TOKEN=deployment.token,
        ANTHROPIC_MODEL=endpoint,
        ANTHROPIC_DEFAULT_HAIKU_MODEL=endpoint,
        ANTHROPIC_SMALL_FAST_MODEL=endpoint,
        DISABLE_TELEMETRY="1",
        DISABLE_ERROR_REPORTING="1",
        DISABLE_AUTOUPDATER="1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
    )
    done = subprocess.run(
        [str(npm_bin("claude")), "-p", prompt],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, f"claude failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.compat("claude-code", "`claude -p` (default mode) → OpenAI-compatible upstream")
def test_claude_print_mode_is_served_and_logged(deployment: Deployment, tmp_path: Path) -> None:
    before = len(deployment.stub.seen_bodies)
    out = claude(deployment, tmp_path, deployment.openai_endpoint, "Say hello.")
    assert REPLY in out
    bodies = deployment.stub.seen_bodies[before:]
    assert bodies, "Claude Code's request never reached the upstream"
    # Its mid-conversation system message reached the model, in place (OpenAI takes it there).
    assert any(m["role"] == "system" and i > 0 for b in bodies for i, m in enumerate(b["messages"]))
    rows = [r for r in payload_rows(deployment.server, deployment.openai_endpoint) if r["api"]]
    mine = [r for r in rows if "Say hello." in (r["request"] or "")]
    assert mine and mine[-1]["requester"] == USER and mine[-1]["status_code"] == "200"
    assert REPLY in mine[-1]["response"]


@pytest.mark.compat("claude-code", "`claude -p` (default mode) → Anthropic upstream")
def test_claude_print_mode_through_an_anthropic_upstream(
    deployment: Deployment, tmp_path: Path
) -> None:
    out = claude(deployment, tmp_path, deployment.anthropic_endpoint, "Say hello again.")
    assert REPLY in out
    rows = payload_rows(deployment.server, deployment.anthropic_endpoint)
    assert any(r["requester"] == USER and "Say hello again." in r["request"] for r in rows)


@pytest.mark.compat("claude-code", "tool round trip (`Read` a file)")
def test_claude_runs_the_tool_the_model_asks_for(deployment: Deployment, tmp_path: Path) -> None:
    secret = tmp_path / "notes.txt"
    secret.write_text("The gate code is 7-3-1-9.\n")
    deployment.stub.tool_call = ("Read", {"file_path": str(secret)})
    try:
        out = claude(deployment, tmp_path, deployment.openai_endpoint, "What is the gate code?")
    finally:
        deployment.stub.tool_call = None
    # The upstream asked for Read; Claude Code read the file and sent the result back; the
    # upstream's answer quotes it.
    assert REPLY in out and "7-3-1-9" in out
