"""``bastion bundle`` against a real server, as a user runs it: deploy applies in order and
records state on the server, a second deploy changes nothing, destroy removes what the bundle
created and nothing else, a failure leaves a consistent state that a re-run finishes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import RunningServer, create_user

BUNDLE = """
bundle: {name: shop}
variables:
  catalog: {default: main}
resources:
  schemas:
    sales:
      name: sales
      catalog_name: ${var.catalog}
      comment: Sales data
      grants: [{principal: users, privileges: [USE SCHEMA]}]
  registered_models:
    bot:
      name: bot
      catalog_name: ${var.catalog}
      schema_name: ${resources.schemas.sales.name}
      versions:
        - external_model: {provider: openai, name: gpt-x, openai_config: {openai_api_base: "https://api.example.com/v1"}}
      aliases: [{alias_name: champion, version_num: 1}]
      grants: [{principal: users, privileges: [EXECUTE]}]
  model_serving_endpoints:
    bot:
      name: shop-bot
      config:
        served_entities: [{name: v, entity_name: "main.sales.bot", entity_version: "@champion"}]
      ai_gateway:
        rate_limits: [{key: user, calls: 100, renewal_period: minute}]
      permissions: [{level: CAN_QUERY, group_name: users}]
  functions:
    eu_only:
      name: eu_only
      catalog_name: main
      schema_name: ${resources.schemas.sales.name}
      parameters: "region STRING"
      returns: BOOLEAN
      body: "region = 'EU'"
  views:
    recent:
      name: recent_requests
      catalog_name: main
      schema_name: ${resources.schemas.sales.name}
      query: "SELECT request_id, requester FROM main.default.shop_bot_payload"
targets:
  prod: {mode: production, default: true}
"""


def bastion(
    server: RunningServer, folder: Path, *args: str, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BASTION_HOST": server.url,
        "BASTION_TOKEN": token or server.admin_token,
        "BASTION_CONFIG_FILE": str(folder / ".config"),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", "bundle", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _bundle(tmp_path: Path, text: str = BUNDLE) -> Path:
    folder = tmp_path / "shop"
    folder.mkdir(exist_ok=True)
    (folder / "bastion.yml").write_text(textwrap.dedent(text))
    return folder


def test_deploy_is_idempotent_and_destroy_keeps_what_it_did_not_create(
    server: RunningServer, tmp_path: Path
) -> None:
    folder = _bundle(tmp_path)
    run = lambda *a: bastion(server, folder, *a)  # noqa: E731
    planned = run("plan", "-o", "json", "--detailed-exitcode")
    assert planned.returncode == 2, planned.stderr
    actions = json.loads(planned.stdout)["actions"]
    assert [a["resource"] for a in actions] == [
        "schemas.sales",
        "registered_models.bot",
        "model_serving_endpoints.bot",
        "functions.eu_only",
        "views.recent",
    ]
    deployed = run("deploy")
    assert deployed.returncode == 0, deployed.stderr
    assert "5 change(s)" in deployed.stdout
    again = run("deploy")
    assert again.returncode == 0 and "No changes" in again.stdout, again.stdout + again.stderr
    assert run("plan", "--detailed-exitcode").returncode == 0

    with server.admin() as admin:
        endpoint = admin.get("/api/2.0/serving-endpoints/shop-bot").json()
        assert endpoint["config"]["served_entities"][0]["entity_version"] == "@champion"
        grants = admin.get("/api/2.1/unity-catalog/permissions/schema/main.sales").json()
        assert {"principal": "users", "privileges": ["USE_SCHEMA"]} in grants[
            "privilege_assignments"
        ]
        # Beside the bundle: a table by hand in another schema, and a grant revoked by hand.
        made = admin.post(
            "/api/2.0/sql/statements",
            json={"statement": "CREATE TABLE main.default.by_hand (a INT)", "wait_timeout": "30s"},
        )
        assert made.json()["status"]["state"] == "SUCCEEDED"
        change = {"changes": [{"principal": "users", "remove": ["EXECUTE"]}]}
        admin.patch(
            "/api/2.1/unity-catalog/permissions/registered_model/main.sales.bot", json=change
        )

    drift = json.loads(run("plan", "-o", "json").stdout)["actions"]
    assert drift == [
        {
            "resource": "registered_models.bot",
            "action": "update",
            "name": "main.sales.bot",
            "changes": ["grants"],
        }
    ]
    (folder / "bastion.yml").write_text(
        textwrap.dedent(BUNDLE).replace("comment: Sales data", "comment: Sales data, v2")
    )
    changed = json.loads(run("plan", "-o", "json").stdout)["actions"]
    assert {(a["resource"], tuple(a["changes"])) for a in changed} == {
        ("schemas.sales", ("comment",)),
        ("registered_models.bot", ("grants",)),
    }
    assert run("deploy").returncode == 0
    summary = json.loads(run("summary", "-o", "json").stdout)
    assert len(summary["resources"]) == 5 and summary["deployed_by"] == "admin"

    destroyed = run("destroy", "--auto-approve")
    assert destroyed.returncode == 0, destroyed.stderr
    with server.admin() as admin:
        assert admin.get("/api/2.0/serving-endpoints/shop-bot").status_code == 404
        assert admin.get("/api/2.1/unity-catalog/schemas/main.sales").status_code == 404
        assert admin.get("/api/2.1/unity-catalog/tables/main.default.by_hand").status_code == 200
    assert "Nothing to destroy" in run("destroy", "--auto-approve").stdout


def test_a_failure_leaves_a_consistent_state_and_a_rerun_finishes(
    server: RunningServer, tmp_path: Path
) -> None:
    broken = BUNDLE.replace("main.default.shop_bot_payload", "main.default.not_there")
    folder = _bundle(tmp_path, broken)
    first = bastion(server, folder, "deploy")
    assert first.returncode == 1
    assert "create views.recent failed" in first.stderr
    assert (
        "Applied: schemas.sales, registered_models.bot, model_serving_endpoints.bot, functions.eu_only"
        in first.stderr
    )
    assert "Not applied: views.recent" in first.stderr
    summary = json.loads(bastion(server, folder, "summary", "-o", "json").stdout)
    assert {r["resource"] for r in summary["resources"]} == {
        "schemas.sales",
        "registered_models.bot",
        "model_serving_endpoints.bot",
        "functions.eu_only",
    }
    (folder / "bastion.yml").write_text(textwrap.dedent(BUNDLE))
    finished = bastion(server, folder, "deploy")
    assert finished.returncode == 0, finished.stderr
    assert "1 change(s)" in finished.stdout  # only the view was left to do


def test_existing_objects_are_not_adopted_and_state_is_shared_by_managers(
    server: RunningServer, tmp_path: Path
) -> None:
    _, ana = create_user(server, "ana@example.com")
    _, bob = create_user(server, "bob@example.com")
    _, eve = create_user(server, "eve@example.com")
    with server.admin() as admin:
        admin.post("/api/2.1/unity-catalog/schemas", json={"name": "taken", "catalog_name": "main"})
    folder = _bundle(
        tmp_path,
        """
        bundle: {name: team}
        permissions: [{level: CAN_MANAGE, user_name: bob@example.com}]
        resources:
          registered_models:
            m: {name: team_model, catalog_name: main, schema_name: default}
          schemas:
            t: {name: taken, catalog_name: main}
        """,
    )
    refused = bastion(server, folder, "deploy", token=ana)
    assert refused.returncode == 1
    assert (
        "not created by this bundle" in refused.stderr
        and "schemas.t (main.taken)" in refused.stderr
    )

    (folder / "bastion.yml").write_text(
        (folder / "bastion.yml").read_text().replace("name: taken", "name: team_schema")
    )
    with server.admin() as admin:  # ana may create schemas in main for this test
        grant = {"changes": [{"principal": "ana@example.com", "add": ["CREATE_SCHEMA"]}]}
        admin.patch("/api/2.1/unity-catalog/permissions/catalog/main", json=grant)
    assert bastion(server, folder, "deploy", token=ana).returncode == 0
    # bob manages the bundle too: he sees the same state (no changes), eve may not deploy it
    assert "No changes" in bastion(server, folder, "deploy", token=bob).stdout
    eves = bastion(server, folder, "deploy", token=eve)
    assert eves.returncode == 1 and "may not deploy bundle 'team'" in eves.stderr


def test_prevent_destroy_and_the_lock(server: RunningServer, tmp_path: Path) -> None:
    folder = _bundle(
        tmp_path,
        """
        bundle: {name: keep}
        resources:
          schemas:
            s: {name: keepme, catalog_name: main, lifecycle: {prevent_destroy: true}}
        """,
    )
    assert bastion(server, folder, "deploy").returncode == 0
    refused = bastion(server, folder, "destroy", "--auto-approve")
    assert refused.returncode == 1 and "prevent_destroy protects: schemas.s" in refused.stderr
    with server.admin() as admin:  # someone else is deploying this target right now
        held = admin.post(
            "/api/2.0/bastion/bundles/keep/deployments/default/lock",
            json={"holder": "another-deployer-1", "ttl_s": 600},
        )
        assert held.status_code == 200, held.text
    busy = bastion(server, folder, "deploy")
    assert busy.returncode == 1 and "is being deployed by admin" in busy.stderr
