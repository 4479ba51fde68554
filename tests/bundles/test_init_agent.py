"""``bastion init agent demo && cd demo && bastion bundle deploy -t dev``: the agent is
registered, served with its inference table, granted and red-team gated; a second deploy
changes nothing; destroy removes what it created and nothing else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from conftest import RunningServer


def _cli(server: RunningServer, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BASTION_HOST": server.url,
        "BASTION_TOKEN": server.admin_token,
        "BASTION_CONFIG_FILE": str(cwd / ".bastion-config"),
    }
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_init_agent_deploys_gates_and_destroys(server: RunningServer, tmp_path: Path) -> None:
    made = _cli(server, tmp_path, "init", "agent", "demo")
    assert made.returncode == 0, made.stderr
    project = tmp_path / "demo"
    assert {p.name for p in project.iterdir()} >= {
        "bastion.yml",
        "AGENTS.md",
        "CLAUDE.md",
        ".gitignore",
        "agent",
        "tests",
    }
    assert "AGENTS.md" in (project / "CLAUDE.md").read_text()
    assert "Never commit" in (project / "AGENTS.md").read_text()
    own_tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert own_tests.returncode == 0, own_tests.stdout + own_tests.stderr

    with server.admin() as admin:  # something made by hand beside the bundle
        body = {
            "name": "by-hand",
            "config": {
                "served_entities": [
                    {
                        "name": "x",
                        "external_model": {
                            "provider": "openai",
                            "name": "x",
                            "openai_config": {"openai_api_base": "https://api.example.com/v1"},
                        },
                    }
                ]
            },
        }
        assert admin.post("/api/2.0/serving-endpoints", json=body).status_code == 200

    deployed = _cli(server, project, "bundle", "deploy", "-t", "dev")
    assert deployed.returncode == 0, deployed.stderr
    assert "gate passed" in deployed.stderr
    endpoint = "dev_admin_demo"
    chat = openai.OpenAI(base_url=f"{server.url}/serving-endpoints", api_key=server.admin_token)
    reply = chat.chat.completions.create(
        model=endpoint, messages=[{"role": "user", "content": "Are you open on Friday?"}]
    )
    assert "9:00-20:00" in (reply.choices[0].message.content or "")
    server.platform.writer.flush()
    with server.admin() as admin:
        rows = admin.post(
            "/api/2.0/sql/statements",
            json={
                "statement": f"SELECT requester, scan_type FROM main.default.{endpoint}_payload",
                "wait_timeout": "30s",
            },
        ).json()
        assert ["admin", "normal"] in rows["result"]["data_array"]
        assert ["admin", "redteam"] in rows["result"]["data_array"]  # the gate's traffic
        acl = admin.get(f"/api/2.0/permissions/serving-endpoints/{endpoint}").json()
        assert any(
            e.get("group_name") == "users"
            and e["all_permissions"][0]["permission_level"] == "CAN_QUERY"
            for e in acl["access_control_list"]
        )

    again = _cli(server, project, "bundle", "deploy", "-t", "dev")
    assert again.returncode == 0 and "No changes" in again.stdout, again.stdout + again.stderr
    summary = json.loads(
        _cli(server, project, "bundle", "summary", "-t", "dev", "-o", "json").stdout
    )
    assert {r["resource"] for r in summary["resources"]} == {
        "registered_models.agent",
        "model_serving_endpoints.agent",
        "redteam_scans.gate",
    }

    destroyed = _cli(server, project, "bundle", "destroy", "-t", "dev", "--auto-approve")
    assert destroyed.returncode == 0, destroyed.stderr
    with server.admin() as admin:
        assert admin.get(f"/api/2.0/serving-endpoints/{endpoint}").status_code == 404
        assert (
            admin.get("/api/2.1/unity-catalog/models/main.default.dev_admin_demo").status_code
            == 404
        )
        assert admin.get("/api/2.0/serving-endpoints/by-hand").status_code == 200
