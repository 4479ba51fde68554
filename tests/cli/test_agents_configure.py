"""``bastion agents configure``: as an ordinary user, against a real server and endpoint."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from conftest import RunningServer, create_user
from upstream_stub import StubServer, external_entity, start_stub

REPLY = "Configured through Bastion."


@pytest.fixture(scope="module")
def stub() -> Iterator[StubServer]:
    server = start_stub(REPLY)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def coder(shared_server: RunningServer, stub: StubServer) -> str:
    """A user with CAN_QUERY on endpoint ``coder``; returns the user's token."""
    _, token = create_user(shared_server, "coder@example.com")
    with shared_server.admin() as admin:
        created = admin.post(
            "/api/2.0/serving-endpoints",
            json={"name": "coder", "config": {"served_entities": [external_entity(stub)]}},
        )
        assert created.status_code == 200, created.text
        acl = [{"user_name": "coder@example.com", "permission_level": "CAN_QUERY"}]
        granted = admin.patch(
            "/api/2.0/permissions/serving-endpoints/coder", json={"access_control_list": acl}
        )
        assert granted.status_code == 200, granted.text
    return token


def configure(
    server: RunningServer, home: Path, token: str, *args: str, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("CLAUDE_CONFIG_DIR", "CODEX_HOME")},
        "HOME": str(home),
        "BASTION_HOST": server.url,
        "BASTION_TOKEN": token,
        "BASTION_CONFIG_FILE": str(home / "bastion-config"),
        **extra_env,
    }
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", "agents", "configure", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def status(server: RunningServer, token: str, path: str) -> int:
    with server.client(token) as http:
        return http.get(path).status_code


def test_claude_code_settings_are_written_and_work(
    shared_server: RunningServer, coder: str, tmp_path: Path
) -> None:
    settings = tmp_path / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text(json.dumps({"theme": "dark", "env": {"KEEP": "1"}}))
    done = configure(
        shared_server, tmp_path, coder, "claude-code", "--endpoint", "coder", "--write"
    )
    assert done.returncode == 0, done.stderr
    assert str(settings) in done.stderr and "bstp_" not in done.stderr + done.stdout
    assert stat.S_IMODE(settings.stat().st_mode) == 0o600
    written = json.loads(settings.read_text())
    assert written["theme"] == "dark" and written["env"]["KEEP"] == "1"
    env = written["env"]
    assert env["ANTHROPIC_BASE_URL"] == f"{shared_server.url}/serving-endpoints/anthropic"
    assert env["ANTHROPIC_MODEL"] == "coder"

    # The settings, used the way Claude Code uses them (bearer token, Messages API), answer.
    client = anthropic.Anthropic(
        base_url=env["ANTHROPIC_BASE_URL"], auth_token=env["ANTHROPIC_AUTH_TOKEN"], api_key=None
    )
    message = client.messages.create(
        model=env["ANTHROPIC_MODEL"], max_tokens=32, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].text == REPLY  # type: ignore[union-attr]

    # The minted token may query endpoints and nothing else.
    token = env["ANTHROPIC_AUTH_TOKEN"]
    assert status(shared_server, token, "/api/2.1/unity-catalog/catalogs") == 403
    assert status(shared_server, token, "/api/2.0/token/list") == 403

    # Configuring again replaces the token: the old one stops working, the new one works.
    again = configure(
        shared_server, tmp_path, coder, "claude-code", "--endpoint", "coder", "--write"
    )
    assert again.returncode == 0, again.stderr
    fresh = json.loads(settings.read_text())["env"]["ANTHROPIC_AUTH_TOKEN"]
    assert fresh != token
    assert status(shared_server, token, "/api/2.0/preview/scim/v2/Me") == 401
    assert status(shared_server, fresh, "/api/2.0/preview/scim/v2/Me") == 200


def test_codex_config_is_printed_or_written_and_works(
    shared_server: RunningServer, coder: str, tmp_path: Path
) -> None:
    printed = configure(shared_server, tmp_path, coder, "codex", "--endpoint", "coder")
    assert printed.returncode == 0, printed.stderr
    assert not (tmp_path / ".codex").exists()  # printing writes nothing
    config = tomllib.loads(printed.stdout)
    provider = config["model_providers"][config["model_provider"]]
    assert provider["wire_api"] == "responses"
    assert provider["base_url"] == f"{shared_server.url}/serving-endpoints"

    # Used as Codex uses it: the Responses API with the provider's bearer token.
    client = openai.OpenAI(
        base_url=provider["base_url"], api_key=provider["experimental_bearer_token"]
    )
    response = client.responses.create(model=config["model"], input="hi", max_output_tokens=32)
    assert response.output_text == REPLY

    codex_home = tmp_path / "codex-home"
    (codex_home).mkdir()
    (codex_home / "config.toml").write_text('# mine\napproval_policy = "never"\n')
    env_home = tmp_path / "h"
    env_home.mkdir()
    written = configure(
        shared_server,
        env_home,
        coder,
        "codex",
        "--endpoint",
        "coder",
        "--write",
        CODEX_HOME=str(codex_home),
    )
    assert written.returncode == 0, written.stderr
    text = (codex_home / "config.toml").read_text()
    assert text.startswith("# mine") and tomllib.loads(text)["approval_policy"] == "never"
    assert not (env_home / ".codex").exists()


def test_bad_requests_exit_with_one_line_and_mint_nothing(
    shared_server: RunningServer, coder: str, tmp_path: Path
) -> None:
    def tokens() -> int:
        with shared_server.client(coder) as http:
            return len(http.get("/api/2.0/token/list").json().get("token_infos", []))

    before = tokens()
    unknown = configure(shared_server, tmp_path, coder, "vim", "--endpoint", "coder")
    assert unknown.returncode == 2 and "claude-code, codex" in unknown.stderr

    missing = configure(shared_server, tmp_path, coder, "codex", "--endpoint", "nope", "--write")
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1 and "nope" in missing.stderr

    broken = tmp_path / ".claude" / "settings.json"
    broken.parent.mkdir()
    broken.write_text("{oops")
    refused = configure(
        shared_server, tmp_path, coder, "claude-code", "--endpoint", "coder", "--write"
    )
    assert refused.returncode == 1 and "not valid JSON" in refused.stderr
    assert broken.read_text() == "{oops"
    assert tokens() == before  # the token minted for the refused write was revoked again


def test_a_user_without_access_to_the_endpoint_gets_no_token(
    shared_server: RunningServer, coder: str, tmp_path: Path
) -> None:
    _, outsider = create_user(shared_server, "outsider@example.com")
    refused = configure(shared_server, tmp_path, outsider, "claude-code", "--endpoint", "coder")
    assert refused.returncode == 1 and "coder" in refused.stderr
    with httpx.Client(base_url=shared_server.url) as http:
        listed = http.get(
            "/api/2.0/token/list", headers={"Authorization": f"Bearer {outsider}"}
        ).json()
    assert not [t for t in listed.get("token_infos", []) if "agents configure" in t["comment"]]
