"""The ``bastion`` command, run as a real subprocess against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import RunningServer

CLI = (sys.executable, "-m", "bastion.cli.main")


def bastion(
    server: RunningServer, tmp_path: Path, *args: str, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BASTION_HOST": server.url,
        "BASTION_TOKEN": token or server.admin_token,
        "BASTION_CONFIG_FILE": str(tmp_path / "config"),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_admin_workflow_through_the_cli(shared_server: RunningServer, tmp_path: Path) -> None:
    run = lambda *a: bastion(shared_server, tmp_path, *a)  # noqa: E731
    assert run("users", "create", "cli@example.com", "--display-name", "Cli").returncode == 0
    listed = run("users", "list", "--json")
    assert "cli@example.com" in [u["userName"] for u in json.loads(listed.stdout)]
    assert run("groups", "create", "cli-team").returncode == 0
    assert run("groups", "add-member", "cli-team", "cli@example.com").returncode == 0
    groups = json.loads(run("groups", "list", "--json").stdout)
    assert next(g for g in groups if g["displayName"] == "cli-team")["members"] == ["Cli"]

    assert run("catalogs", "create", "clicat", "--comment", "from the CLI").returncode == 0
    assert run("schemas", "create", "clicat.raw").returncode == 0
    granted = run(
        "grants", "update", "catalog", "clicat", "--principal", "cli-team", "--add", "USE CATALOG"
    )
    assert granted.returncode == 0, granted.stderr
    grants = json.loads(run("grants", "get", "catalog", "clicat", "--json").stdout)
    assert {"principal": "cli-team", "privileges": ["USE_CATALOG"]} in grants
    catalogs = run("catalogs", "list")
    assert "clicat" in catalogs.stdout and "from the CLI" in catalogs.stdout

    token = json.loads(
        run("tokens", "create", "--comment", "cli", "--lifetime-seconds", "600").stdout
    )
    assert token["token_value"].startswith("bstp_")
    assert token["token_info"]["token_id"] in run("tokens", "list").stdout
    assert run("tokens", "revoke", token["token_info"]["token_id"]).returncode == 0
    audit = json.loads(run("audit", "list", "--action", "createCatalog", "--json").stdout)
    assert audit and audit[0]["request_params"]["name"] == "clicat"


def test_errors_are_one_line_and_exit_non_zero(
    shared_server: RunningServer, tmp_path: Path
) -> None:
    missing = bastion(shared_server, tmp_path, "catalogs", "get", "no_such_catalog")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "Error: Catalog 'no_such_catalog' does not exist."
    assert "Traceback" not in missing.stderr

    bad_token = bastion(shared_server, tmp_path, "catalogs", "list", token="bstp_" + "0" * 40)
    assert bad_token.returncode == 1 and "Invalid access token" in bad_token.stderr

    usage = bastion(shared_server, tmp_path, "catalogs", "create")
    assert usage.returncode == 2


def test_configure_writes_a_private_profile(shared_server: RunningServer, tmp_path: Path) -> None:
    done = bastion(
        shared_server, tmp_path, "configure", "--host", "http://h:1", "--token", "bstp_x"
    )
    assert done.returncode == 0
    config = tmp_path / "config"
    assert config.stat().st_mode & 0o777 == 0o600
    assert "host = http://h:1" in config.read_text()


def test_password_comes_on_standard_input(shared_server: RunningServer, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BASTION_HOST": shared_server.url,
        "BASTION_TOKEN": shared_server.admin_token,
        "BASTION_CONFIG_FILE": str(tmp_path / "config"),
    }
    created = subprocess.run(
        [*CLI, "users", "create", "piped@example.com", "--prompt-password"],
        input="piped-password-1\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    with shared_server.client() as anon:
        login = anon.post(
            "/oidc/v1/token",
            data={
                "grant_type": "password",
                "username": "piped@example.com",
                "password": "piped-password-1",
            },
        )
    assert login.status_code == 200, login.text
    empty = subprocess.run(
        [*CLI, "users", "create", "nopw@example.com", "--prompt-password"],
        input="",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert empty.returncode == 1 and "no password" in empty.stderr.lower()


def test_tables_list_get_describe_history_and_readable_grants(
    shared_server: RunningServer, tmp_path: Path
) -> None:
    run = lambda *a: bastion(shared_server, tmp_path, *a)  # noqa: E731
    for statement in (
        "CREATE TABLE main.default.cli_orders (id BIGINT COMMENT 'order id', region STRING)",
        "INSERT INTO main.default.cli_orders VALUES (1, 'EU'), (2, 'US')",
    ):
        assert run("sql", statement).returncode == 0
    listed = json.loads(run("tables", "list", "main.default", "--json").stdout)
    assert "main.default.cli_orders" in [t["full_name"] for t in listed]
    got = json.loads(run("tables", "get", "main.default.cli_orders").stdout)
    assert [c["name"] for c in got["columns"]] == ["id", "region"]
    described = run("tables", "describe", "main.default.cli_orders")
    assert "order id" in described.stdout and "bigint" in described.stdout
    history = json.loads(run("tables", "history", "main.default.cli_orders", "--json").stdout)
    assert [h["operation"] for h in history][:2] == ["WRITE", "CREATE TABLE"]
    assert [h["version"] for h in history][:2] == ["1", "0"]
    bad = run("tables", "list", "main")
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    missing = run("tables", "history", "main.default.nope")
    assert missing.returncode == 1 and "does not exist" in missing.stderr

    assert (
        run(
            "grants",
            "update",
            "table",
            "main.default.cli_orders",
            "--principal",
            "users",
            "--add",
            "SELECT",
            "--add",
            "MODIFY",
        ).returncode
        == 0
    )
    shown = run("grants", "get", "table", "main.default.cli_orders")
    assert "MODIFY, SELECT" in shown.stdout and '"' not in shown.stdout
    effective = run("grants", "effective", "table", "main.default.cli_orders")
    assert "catalog main" in effective.stdout and "USE_CATALOG" in effective.stdout
    assert "[" not in effective.stdout and "{" not in effective.stdout


def test_the_cli_imports_no_server_or_data_stack() -> None:
    """The CLI is a thin HTTP client: starting it loads no data, model or server stack."""
    probe = (
        "import sys, bastion.cli.main; "
        "heavy = ('pyarrow', 'deltalake', 'duckdb', 'pandas', 'llama_cpp', 'numpy', "
        "'sqlalchemy', 'fastapi', 'uvicorn', 'bastion.server', 'bastion.serving', "
        "'bastion.query', 'bastion.platform', 'bastion.tables'); "
        "print(sorted({h for m in sys.modules for h in heavy "
        "if m == h or m.startswith(h + '.')}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]", loaded.stdout


def test_status_is_for_admins(shared_server: RunningServer, tmp_path: Path) -> None:
    shown = bastion(shared_server, tmp_path, "status", "--json")
    assert shown.returncode == 0, shown.stderr
    body = json.loads(shown.stdout)
    assert body["server"]["pid"] > 0 and isinstance(body["processes"], list)
    assert "server pid" in bastion(shared_server, tmp_path, "status").stdout
    from conftest import create_user

    _, token = create_user(shared_server, "nostatus@example.com")
    denied = bastion(shared_server, tmp_path, "status", token=token)
    assert denied.returncode == 1 and len(denied.stderr.strip().splitlines()) == 1
