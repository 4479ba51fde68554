"""Hole 10: every listing of grants follows one rule (Databricks' ``SHOW GRANTS``).

Admins, owners and those who may manage an object's grants see every grantee; anyone else
sees only the grants to themselves and their groups — in the permissions REST API,
``effective-permissions``, ``SHOW GRANTS``, ``information_schema.table_privileges`` and the
serving-endpoint ACL API alike.
"""

from __future__ import annotations

from typing import Any

import httpx

from conftest import RunningServer, create_user


def _sql(client: httpx.Client, statement: str) -> list[list[Any]]:
    response = client.post(
        "/api/2.0/sql/statements", json={"statement": statement, "wait_timeout": "30s"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"]["state"] == "SUCCEEDED", body
    return body.get("result", {}).get("data_array", [])


def _setup(server: RunningServer) -> tuple[str, str]:
    _, alice = create_user(server, "alice@example.com")
    _, bob = create_user(server, "bob@example.com")
    with server.admin() as admin:
        _sql(admin, "CREATE TABLE main.default.ledger (a INT)")
        _sql(admin, "GRANT SELECT ON TABLE main.default.ledger TO `alice@example.com`")
        _sql(admin, "GRANT SELECT ON TABLE main.default.ledger TO `bob@example.com`")
        _sql(admin, "GRANT MODIFY ON TABLE main.default.ledger TO `alice@example.com`")
    return alice, bob


def _rest_grantees(client: httpx.Client, path: str) -> set[str]:
    response = client.get(f"/api/2.1/unity-catalog/{path}/table/main.default.ledger")
    assert response.status_code == 200, response.text
    return {a["principal"] for a in response.json()["privilege_assignments"]}


def test_ordinary_user_sees_only_own_grants_everywhere(server: RunningServer) -> None:
    _, bob = _setup(server)
    with server.client(bob) as client:
        assert _rest_grantees(client, "permissions") == {"bob@example.com"}
        effective = _rest_grantees(client, "effective-permissions")
        assert "alice@example.com" not in effective and "bob@example.com" in effective
        shown = {row[0] for row in _sql(client, "SHOW GRANTS ON TABLE main.default.ledger")}
        assert shown == {"bob@example.com"}
        info = _sql(
            client,
            "SELECT DISTINCT grantee FROM system.information_schema.table_privileges "
            "WHERE table_name = 'ledger'",
        )
        assert {row[0] for row in info} == {"bob@example.com"}
        # Asking about someone else by name shows nothing either.
        other = _sql(client, "SHOW GRANTS `alice@example.com` ON TABLE main.default.ledger")
        assert other == []


def test_owner_and_admin_see_every_grantee(server: RunningServer) -> None:
    _setup(server)
    with server.admin() as admin:
        assert _rest_grantees(admin, "permissions") == {"alice@example.com", "bob@example.com"}
        shown = {row[0] for row in _sql(admin, "SHOW GRANTS ON TABLE main.default.ledger")}
        assert shown == {"alice@example.com", "bob@example.com"}


def test_endpoint_acl_shows_non_managers_only_their_own_entries(server: RunningServer) -> None:
    _, carol = create_user(server, "carol@example.com")
    _, dave = create_user(server, "dave@example.com")
    with server.admin() as admin:
        created = admin.post(
            "/api/2.0/serving-endpoints",
            json={
                "name": "acl-probe",
                "config": {
                    "served_entities": [
                        {
                            "name": "ext",
                            "external_model": {
                                "provider": "openai",
                                "name": "gpt-x",
                                "openai_config": {"openai_api_base": "https://api.example.com/v1"},
                            },
                        }
                    ]
                },
            },
        )
        assert created.status_code == 200, created.text
        acl = admin.patch(
            "/api/2.0/permissions/serving-endpoints/acl-probe",
            json={
                "access_control_list": [
                    {"user_name": "carol@example.com", "permission_level": "CAN_QUERY"},
                    {"user_name": "dave@example.com", "permission_level": "CAN_QUERY"},
                ]
            },
        )
        assert acl.status_code == 200, acl.text
    with server.client(dave) as client:
        doc = client.get("/api/2.0/permissions/serving-endpoints/acl-probe").json()
    users = {e.get("user_name") for e in doc["access_control_list"] if e.get("user_name")}
    assert users == {"dave@example.com"}
    with server.admin() as admin:
        doc = admin.get("/api/2.0/permissions/serving-endpoints/acl-probe").json()
    users = {e.get("user_name") for e in doc["access_control_list"] if e.get("user_name")}
    assert {"carol@example.com", "dave@example.com", "admin"} <= users
    del carol
