"""The seed's query: who called which model version with what — via ``bastion.sql``, as oneself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import openai
import pytest

from bastion import sql
from conftest import RunningServer, create_user
from upstream_stub import StubServer, deploy_stub_model, start_stub

UC = "/api/2.1/unity-catalog"


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = start_stub("The shrine opens at 9.")
    yield server
    server.shutdown()
    server.server_close()


def test_payload_row_by_client_request_id_as_the_callers_own_grants(
    server: RunningServer, stub: StubServer
) -> None:
    deploy_stub_model(server, stub)
    client = openai.OpenAI(base_url=f"{server.url}/serving-endpoints", api_key=server.admin_token)
    client.chat.completions.create(
        model="helpdesk",
        messages=[{"role": "user", "content": "When does the shrine open?"}],
        extra_body={"client_request_id": "kyoto-42", "usage_context": {"app": "guide"}},
    )
    server.platform.writer.flush()
    _, analyst = create_user(server, "analyst@example.com")
    query = (
        "SELECT request, response, model_name, model_version, total_duration_ms, "
        "input_tokens, output_tokens, requester, scan_type, usage_context['app'] AS app "
        "FROM main.default.helpdesk_payload WHERE client_request_id = :cid"
    )
    host = server.url.removeprefix("http://")
    with sql.connect(server_hostname=host, access_token=analyst) as conn, conn.cursor() as cur:
        with pytest.raises(sql.ProgrammingError) as denied:
            cur.execute(query, {"cid": "kyoto-42"})
        assert denied.value.error_code == "PERMISSION_DENIED"

    with server.admin() as admin:
        grant = {"changes": [{"principal": "analyst@example.com", "add": ["SELECT"]}]}
        assert admin.patch(
            f"{UC}/permissions/table/main.default.helpdesk_payload", json=grant
        ).is_success

    with sql.connect(server_hostname=host, access_token=analyst) as conn, conn.cursor() as cur:
        cur.execute(query, {"cid": "kyoto-42"})
        assert [d[0] for d in cur.description or []][:4] == [
            "request",
            "response",
            "model_name",
            "model_version",
        ]
        rows = cur.fetchall()
    assert len(rows) == 1
    row = rows[0]
    assert "When does the shrine open?" in json.loads(row.request)["messages"][0]["content"]
    assert "The shrine opens at 9." in row.response
    assert (row.model_name, row.model_version) == ("main.default.helpdesk_model", "1")
    assert row.total_duration_ms >= 0 and row.output_tokens > 0 and row.input_tokens > 0
    assert (row.requester, row.scan_type, row.app) == ("admin", "normal", "guide")


def test_statement_execution_api_shape(server: RunningServer) -> None:
    with server.admin() as admin:
        body = {
            "statement": "SELECT :n + 1 AS answer, 'x' AS label",
            "parameters": [{"name": "n", "value": "41", "type": "INT"}],
            "warehouse_id": "ignored",
            "wait_timeout": "10s",
        }
        reply = admin.post("/api/2.0/sql/statements", json=body).json()
        assert reply["status"]["state"] == "SUCCEEDED"
        columns = reply["manifest"]["schema"]["columns"]
        assert [c["name"] for c in columns] == ["answer", "label"]
        assert reply["result"]["data_array"] == [["42", "x"]]
        again = admin.get(f"/api/2.0/sql/statements/{reply['statement_id']}").json()
        assert again["result"]["data_array"] == [["42", "x"]]

        failed = admin.post(
            "/api/2.0/sql/statements", json={"statement": "SELECT * FROM read_parquet('/etc')"}
        ).json()
        assert failed["status"]["state"] == "FAILED"
        assert failed["status"]["error"]["error_code"] == "BAD_REQUEST"  # the SDK's enum
        assert failed["status"]["error"]["bastion_error_code"] in (
            "PERMISSION_DENIED",
            "INVALID_PARAMETER_VALUE",
        )
        bad = admin.post("/api/2.0/sql/statements", json={"statement": "x", "wait_timeout": "3s"})
        assert bad.status_code == 400
        assert admin.get("/api/2.0/sql/statements/nope").status_code == 404


def test_bastion_sql_cli(server: RunningServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {
        **os.environ,
        "BASTION_HOST": server.url,
        "BASTION_TOKEN": server.admin_token,
        "BASTION_CONFIG_FILE": str(tmp_path / "config"),
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bastion.cli.main",
            "sql",
            "SELECT 1 AS one, :w AS word",
            "-p",
            "w=hi",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [{"one": 1, "word": "hi"}]
    bad = subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", "sql", "SELECT * FROM main.default.nope"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1 and "Error:" in bad.stderr and "Traceback" not in bad.stderr
    assert httpx.get(f"{server.url}/healthz").status_code == 200
