"""``bastion init agent demo && cd demo && bastion bundle deploy -t dev``: the agent is
registered, served with its inference table, granted and red-team gated, and its chat app is
deployed and started behind the sign-in; a second deploy changes nothing; destroy removes what
it created and nothing else. ``bastion init app`` the same for a minimal app."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from apps.apps_fixtures import PASSWORD, browser_login, new_user
from bastion.bootstrap import initialize
from bastion.platform import Platform
from conftest import RunningServer, ServerThread, free_port, make_settings


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server on the port its settings name: apps call back there as BASTION_HOST."""
    home = tmp_path_factory.mktemp("init")
    port = free_port()
    services = Platform(
        make_settings(home / "home", f"sqlite:///{home / 'm.db'}", port=port, dashboard=False)
    )
    initialize(services)
    try:
        with ServerThread(services, port=port) as base:
            yield RunningServer(url=base, platform=services)
    finally:
        services.close()


def _app_page(server: RunningServer, app: str, user: str) -> int:
    """The status of the app's page for ``user``, signed in through /login."""
    browser = browser_login(server.url, user, PASSWORD)
    try:
        return browser.get(f"/apps/{app}/", follow_redirects=True).status_code
    finally:
        browser.close()


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
        "app",
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
    app = "dev-admin-demo-chat"
    with server.admin() as admin:
        described = admin.get(f"/api/2.0/apps/{app}").json()
        assert described["app_status"]["state"] == "RUNNING", described
        assert "serving.serving-endpoints" in described["effective_user_api_scopes"]
        assert described["resources"][0]["serving_endpoint"]["name"] == "dev_admin_demo"
    new_user(server, "reader@example.com")  # in `users`: CAN_USE on the app
    assert _app_page(server, app, "reader@example.com") == 200
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
        "apps.chat",
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
        assert admin.get(f"/api/2.0/apps/{app}").status_code == 404


def test_init_app_deploys_a_running_app_and_destroys_it(
    server: RunningServer, tmp_path: Path
) -> None:
    made = _cli(server, tmp_path, "init", "app", "hello")
    assert made.returncode == 0, made.stderr
    project = tmp_path / "hello"
    assert "AGENTS.md" in (project / "CLAUDE.md").read_text()
    own_tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert own_tests.returncode == 0, own_tests.stdout + own_tests.stderr
    plan = _cli(server, project, "bundle", "plan", "-t", "dev", "--detailed-exitcode")
    assert plan.returncode == 2, plan.stdout + plan.stderr
    deployed = _cli(server, project, "bundle", "deploy", "-t", "dev")
    assert deployed.returncode == 0, deployed.stderr
    new_user(server, "viewer@example.com")
    assert _app_page(server, "dev-admin-hello", "viewer@example.com") == 200
    (project / "app" / "app.py").write_text(
        (project / "app" / "app.py").read_text() + "\nst.caption('v2')\n"
    )
    changed = _cli(server, project, "bundle", "plan", "-t", "dev", "-o", "json")
    assert "source" in changed.stdout, changed.stdout
    redeployed = _cli(server, project, "bundle", "deploy", "-t", "dev")
    assert redeployed.returncode == 0, redeployed.stderr
    with server.admin() as admin:
        deployments = admin.get("/api/2.0/apps/dev-admin-hello/deployments").json()
        assert len(deployments["app_deployments"]) == 2
    again = _cli(server, project, "bundle", "deploy", "-t", "dev")
    assert "No changes" in again.stdout, again.stdout + again.stderr
    destroyed = _cli(server, project, "bundle", "destroy", "-t", "dev", "--auto-approve")
    assert destroyed.returncode == 0, destroyed.stderr
    with server.admin() as admin:
        assert admin.get("/api/2.0/apps/dev-admin-hello").status_code == 404
