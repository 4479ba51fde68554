"""``bastion apps`` end to end: a local folder deployed through the CLI, over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from apps_fixtures import ECHO_APP, app_server, browser_login, wait_for

from conftest import ADMIN_PASSWORD, RunningServer

__all__ = ["app_server"]  # a fixture


def bastion(server: RunningServer, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BASTION_HOST": server.url,
        "BASTION_TOKEN": server.admin_token,
        "BASTION_CONFIG_FILE": str(home / "config"),
    }
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_cli_creates_deploys_a_local_folder_and_reads_logs(
    app_server: RunningServer, tmp_path: Path
) -> None:
    created = bastion(app_server, tmp_path, "apps", "create", "cli-app", "--scope", "sql")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["user_api_scopes"] == ["sql"]
    deployed = bastion(
        app_server, tmp_path, "apps", "deploy", "cli-app", "--source-code-path", str(ECHO_APP)
    )
    assert deployed.returncode == 0, deployed.stderr
    assert "RUNNING" in deployed.stdout and "/apps/cli-app/" in deployed.stdout
    listed = bastion(app_server, tmp_path, "apps", "list", "--json")
    assert any(
        a["name"] == "cli-app" and a["state"] == "RUNNING" for a in json.loads(listed.stdout)
    )
    got = json.loads(bastion(app_server, tmp_path, "apps", "get", "cli-app").stdout)
    assert got["active_deployment_id"]

    browser = browser_login(app_server.url, "admin", ADMIN_PASSWORD)
    # The app acts as itself with the credentials Bastion gave it (its service principal).
    me = browser.get("/apps/cli-app/as-app")
    assert me.status_code == 200, me.text
    assert got["service_principal_client_id"] in json.dumps(me.json())

    logs = bastion(app_server, tmp_path, "apps", "logs", "cli-app")
    assert logs.returncode == 0 and "starting on port" in logs.stdout
    follow = subprocess.Popen(
        [sys.executable, "-m", "bastion.cli.main", "apps", "logs", "cli-app", "--follow"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "BASTION_HOST": app_server.url, "BASTION_TOKEN": app_server.admin_token},
    )
    try:
        assert bastion(app_server, tmp_path, "apps", "stop", "cli-app").returncode == 0
        assert bastion(app_server, tmp_path, "apps", "start", "cli-app").returncode == 0
        assert follow.stdout is not None
        stream = follow.stdout
        lines: list[str] = []

        def restarted() -> bool:
            lines.append(stream.readline())
            return sum("starting on port" in line for line in lines) >= 2

        wait_for(restarted, 60, "the follower to print the restart")
    finally:
        follow.terminate()
        follow.wait(timeout=10)
    wait_for(lambda: browser.get("/apps/cli-app/env").status_code == 200, 60, "the app")
    gone = bastion(app_server, tmp_path, "apps", "delete", "cli-app")
    assert gone.returncode == 0, gone.stderr
    missing = bastion(app_server, tmp_path, "apps", "get", "cli-app")
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    browser.close()
