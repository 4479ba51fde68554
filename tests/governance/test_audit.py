"""Audit events land in the Delta table ``system.access.audit`` in Databricks' shape."""

from __future__ import annotations

from deltalake import DeltaTable

from bastion.tables.system import AUDIT
from conftest import RunningServer, create_user

UC = "/api/2.1/unity-catalog"


def test_state_changes_logins_and_data_decisions_are_audited(server: RunningServer) -> None:
    _, token = create_user(server, "aud@example.com")
    with server.admin() as admin, server.client(token, **{"User-Agent": "audit-test/1"}) as user:
        admin.post(f"{UC}/catalogs", json={"name": "audited"})
        admin.post(
            f"{UC}/tables",
            json={
                "catalog_name": "main",
                "schema_name": "default",
                "name": "facts",
                "columns": [{"name": "x", "type_text": "int"}],
            },
        )
        assert user.get(f"{UC}/tables/main.default.facts").status_code == 403
        admin.patch(
            f"{UC}/permissions/table/main.default.facts",
            json={"changes": [{"principal": "aud@example.com", "add": ["SELECT"]}]},
        )
        assert user.get(f"{UC}/tables/main.default.facts").status_code == 200
    server.platform.audit.flush()

    rows = DeltaTable(server.platform.table_storage.location(AUDIT.full_name))
    events = rows.to_pyarrow_table().to_pylist()
    by_action: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    for event in events:
        by_action.setdefault(event["action_name"], []).append(event)

    created = by_action["createCatalog"][0]
    assert created["user_identity"]["email"] == "admin"
    assert dict(created["request_params"])["name"] == "audited"
    assert created["response"]["statusCode"] == 200
    assert created["service_name"] == "unityCatalog" and created["event_date"] is not None

    decisions = [
        (dict(e["request_params"])["result"], e["response"]["statusCode"])
        for e in sorted(by_action["checkPrivilege"], key=lambda e: e["event_time"])
        if e["user_identity"]["email"] == "aud@example.com"
    ]
    assert decisions == [("denied", 403), ("allowed", 200)]
    denied_get = [e for e in by_action["getTable"] if e["response"]["statusCode"] == 403]
    assert denied_get and denied_get[0]["user_agent"] == "audit-test/1"
    assert denied_get[0]["response"]["errorMessage"].startswith("User aud@example.com")
