"""Grants on a catalog flow to children created later; revocation applies on the next request."""

from __future__ import annotations

from conftest import RunningServer, create_user

UC = "/api/2.1/unity-catalog"


def test_catalog_select_reaches_later_tables_and_revocation_is_immediate(
    server: RunningServer,
) -> None:
    _, analyst_token = create_user(server, "analyst@example.com")  # token issued up front
    with server.admin() as admin, server.client(analyst_token) as analyst:
        assert admin.post(f"{UC}/catalogs", json={"name": "sales"}).is_success
        assert admin.post(f"{UC}/schemas", json={"catalog_name": "sales", "name": "q1"}).is_success
        grant = {
            "changes": [
                {"principal": "analyst@example.com", "add": ["USE_CATALOG", "USE_SCHEMA", "SELECT"]}
            ]
        }
        assert admin.patch(f"{UC}/permissions/catalog/sales", json=grant).is_success

        # A table created after the grant is readable through it.
        table = {
            "catalog_name": "sales",
            "schema_name": "q1",
            "name": "orders",
            "columns": [{"name": "id", "type_text": "bigint"}],
        }
        assert admin.post(f"{UC}/tables", json=table).status_code == 200
        assert analyst.get(f"{UC}/tables/sales.q1.orders").status_code == 200

        effective = admin.get(
            f"{UC}/effective-permissions/table/sales.q1.orders",
            params={"principal": "analyst@example.com"},
        ).json()["privilege_assignments"][0]["privileges"]
        assert {
            "privilege": "SELECT",
            "inherited_from_type": "CATALOG",
            "inherited_from_name": "sales",
        } in effective

        revoke = {"changes": [{"principal": "analyst@example.com", "remove": ["SELECT"]}]}
        assert admin.patch(f"{UC}/permissions/catalog/sales", json=revoke).is_success
        denied = analyst.get(f"{UC}/tables/sales.q1.orders")
        assert denied.status_code == 403
        assert denied.json()["error_code"] == "PERMISSION_DENIED"
        assert "SELECT" in denied.json()["message"]


def test_use_privileges_are_required_besides_the_object_privilege(server: RunningServer) -> None:
    _, token = create_user(server, "bob@example.com")
    with server.admin() as admin, server.client(token) as bob:
        admin.post(f"{UC}/catalogs", json={"name": "hr"})
        admin.post(f"{UC}/schemas", json={"catalog_name": "hr", "name": "people"})
        admin.post(
            f"{UC}/tables",
            json={
                "catalog_name": "hr",
                "schema_name": "people",
                "name": "salaries",
                "columns": [{"name": "amount", "type_text": "double"}],
            },
        )
        change = {"changes": [{"principal": "bob@example.com", "add": ["SELECT"]}]}
        admin.patch(f"{UC}/permissions/table/hr.people.salaries", json=change)
        response = bob.get(f"{UC}/tables/hr.people.salaries")
        assert response.status_code == 403
        assert "USE CATALOG" in response.json()["message"]
        change = {"changes": [{"principal": "bob@example.com", "add": ["USE_CATALOG"]}]}
        admin.patch(f"{UC}/permissions/catalog/hr", json=change)
        assert "USE SCHEMA" in bob.get(f"{UC}/tables/hr.people.salaries").json()["message"]
        change = {"changes": [{"principal": "bob@example.com", "add": ["USE_SCHEMA"]}]}
        admin.patch(f"{UC}/permissions/schema/hr.people", json=change)
        assert bob.get(f"{UC}/tables/hr.people.salaries").status_code == 200


def test_group_grants_and_manage_delegation(server: RunningServer) -> None:
    carol_id, carol = create_user(server, "carol@example.com")
    _, dave = create_user(server, "dave@example.com")
    with server.admin() as admin:
        group = admin.post(
            "/api/2.0/preview/scim/v2/Groups",
            json={"displayName": "stewards", "members": [{"value": carol_id}]},
        ).json()
        assert group["members"][0]["value"] == carol_id
        admin.post(f"{UC}/catalogs", json={"name": "ops"})
        change = {"changes": [{"principal": "stewards", "add": ["MANAGE", "USE_CATALOG"]}]}
        admin.patch(f"{UC}/permissions/catalog/ops", json=change)
    with server.client(carol) as c, server.client(dave) as d:
        # Carol manages grants through her group; Dave cannot, until Carol grants him.
        grant = {"changes": [{"principal": "dave@example.com", "add": ["USE_CATALOG"]}]}
        assert d.patch(f"{UC}/permissions/catalog/ops", json=grant).status_code == 403
        assert c.patch(f"{UC}/permissions/catalog/ops", json=grant).status_code == 200
        assert d.get(f"{UC}/catalogs/ops").status_code == 200
        names = [x["name"] for x in d.get(f"{UC}/catalogs").json()["catalogs"]]
        assert "ops" in names and "main" in names


def test_all_privileges_does_not_include_manage(server: RunningServer) -> None:
    _, erin = create_user(server, "erin@example.com")
    with server.admin() as admin:
        admin.post(f"{UC}/catalogs", json={"name": "lab"})
        change = {"changes": [{"principal": "erin@example.com", "add": ["ALL_PRIVILEGES"]}]}
        admin.patch(f"{UC}/permissions/catalog/lab", json=change)
    with server.client(erin) as e:
        assert e.post(f"{UC}/schemas", json={"catalog_name": "lab", "name": "x"}).is_success
        grant = {"changes": [{"principal": "users", "add": ["USE_CATALOG"]}]}
        assert e.patch(f"{UC}/permissions/catalog/lab", json=grant).status_code == 403


def test_use_schema_alone_does_not_reveal_tables(server: RunningServer) -> None:
    _, token = create_user(server, "peek@example.com")
    with server.admin() as admin, server.client(token) as peek:
        table = {
            "catalog_name": "main",
            "schema_name": "default",
            "name": "salaries",
            "columns": [{"name": "amount", "type_text": "double"}],
        }
        assert admin.post(f"{UC}/tables", json=table).status_code == 200
        listed = peek.get(f"{UC}/tables", params={"catalog_name": "main", "schema_name": "default"})
        assert "salaries" not in [t["name"] for t in listed.json()["tables"]]
        change = {"changes": [{"principal": "peek@example.com", "add": ["SELECT"]}]}
        admin.patch(f"{UC}/permissions/table/main.default.salaries", json=change)
        listed = peek.get(f"{UC}/tables", params={"catalog_name": "main", "schema_name": "default"})
        assert "salaries" in [t["name"] for t in listed.json()["tables"]]
