"""``bastion.agents.deploy`` and the ``models|secrets|endpoints|agents`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from bastion import agents
from bastion.cli import registry as cli
from bastion.client import BastionClient
from bastion.serving.control import serving_of
from conftest import RunningServer, create_user

MODEL = "main.default.kyoto_agent"


def external(name: str) -> dict[str, object]:
    return {
        "provider": "openai",
        "name": name,
        "openai_config": {
            "openai_api_key": "{{secrets/llm/key}}",
            "openai_api_base": "http://127.0.0.1:9/v1",
        },
    }


def seed(client: BastionClient) -> None:
    client.request("POST", "/api/2.0/secrets/scopes/create", json={"scope": "llm"})
    client.request(
        "POST", "/api/2.0/secrets/put", json={"scope": "llm", "key": "key", "string_value": "k"}
    )
    catalog, schema, name = MODEL.split(".")
    client.request(
        "POST",
        "/api/2.1/unity-catalog/models",
        json={"name": name, "catalog_name": catalog, "schema_name": schema},
    )
    for upstream in ("agent-v1", "agent-v2"):
        client.request(
            "POST",
            "/api/2.1/unity-catalog/models/versions",
            json={
                "catalog_name": catalog,
                "schema_name": schema,
                "model_name": name,
                "external_model": external(upstream),
            },
        )


def test_deploy_creates_then_updates_the_endpoint(server: RunningServer) -> None:
    with BastionClient(server.url, server.admin_token) as client:
        seed(client)
        first = agents.deploy(MODEL, model_version=1, tags={"team": "kyoto"}, client=client)
        assert first.created and first.endpoint_name == "agents_main-default-kyoto_agent"
        assert first.query_endpoint == (
            f"{server.url}/serving-endpoints/agents_main-default-kyoto_agent/invocations"
        )
        assert first.payload_table == "main.default.kyoto_agent_payload"
        assert first.endpoint["tags"] == [{"key": "team", "value": "kyoto"}]

        second = agents.deploy(MODEL, model_version=2, client=client)
        assert not second.created
        assert second.endpoint["config"]["config_version"] == 2
        (entity,) = second.endpoint["config"]["served_entities"]
        assert (entity["entity_name"], entity["entity_version"]) == (MODEL, "2")
        assert second.endpoint["tags"] == [{"key": "team", "value": "kyoto"}]

    plan = serving_of(server.platform).router.plan(second.endpoint_name)
    assert plan.payload_table == "main.default.kyoto_agent_payload"
    assert plan.entities[0].upstream_model == "agent-v2"


def test_cli_commands(server: RunningServer, tmp_path: Path) -> None:
    app = typer.Typer()
    for name, sub in (
        ("models", cli.models),
        ("secrets", cli.secrets),
        ("endpoints", cli.endpoints),
        ("agents", cli.agents),
    ):
        app.add_typer(sub, name=name)
    _, bob_token = create_user(server, "bob")
    runner = CliRunner()

    def run(*args: str, token: str = server.admin_token, stdin: str | None = None) -> str:
        env = {
            "BASTION_HOST": server.url,
            "BASTION_TOKEN": token,
            "BASTION_CONFIG_FILE": str(tmp_path / "config"),
            "COLUMNS": "200",
        }
        result = runner.invoke(app, list(args), env=env, input=stdin)
        assert result.exit_code == 0, (args, result.output)
        return result.output

    run("secrets", "create-scope", "llm")
    assert "{{secrets/llm/key}}" in run("secrets", "put", "llm", "key", stdin="s3cret\n")
    assert "s3cret" not in run("secrets", "list", "llm", "--json")
    spec = tmp_path / "external.json"
    spec.write_text(json.dumps(external("agent-v1")))
    run("models", "create", MODEL, "--comment", "the agent")
    version = json.loads(run("models", "register", MODEL, "--external", str(spec)))
    assert version["status"] == "READY" and version["version"] == 1
    run("models", "set-alias", MODEL, "@champion", "1")
    versions = json.loads(run("models", "versions", MODEL, "--json"))
    assert versions[0]["aliases"] == "@champion"
    deployed = json.loads(run("agents", "deploy", MODEL, "--version", "@champion"))
    assert deployed["created"] and deployed["payload_table"] == "main.default.kyoto_agent_payload"
    name = deployed["endpoint_name"]
    listed = json.loads(run("endpoints", "list", "--json"))
    assert [e["name"] for e in listed] == [name] and listed[0]["ready"] == "READY"
    run("endpoints", "grant", name, "CAN_QUERY", "--user", "bob")
    acl = json.loads(run("endpoints", "permissions", name))["access_control_list"]
    assert {"user_name": "bob"}.items() <= next(
        e for e in acl if e.get("user_name") == "bob"
    ).items()
    assert name in run("endpoints", "list", token=bob_token)
