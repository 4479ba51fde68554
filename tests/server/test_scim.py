"""SCIM 2.0 provisioning the way identity providers drive it."""

from __future__ import annotations

from conftest import RunningServer

SCIM = "/api/2.0/preview/scim/v2"


def test_user_lifecycle_with_filter_patch_and_delete(shared_server: RunningServer) -> None:
    with shared_server.admin() as admin:
        created = admin.post(
            f"{SCIM}/Users",
            json={
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "ivy@example.com",
                "displayName": "Ivy",
                "emails": [{"value": "ivy@example.com", "primary": True}],
                "externalId": "okta-1",
            },
        )
        assert created.status_code == 201
        user = created.json()
        assert user["userName"] == "ivy@example.com" and user["active"] is True
        assert {"value": user["groups"][0]["value"], "display": "users", "type": "direct"} in user[
            "groups"
        ]

        found = admin.get(f"{SCIM}/Users", params={"filter": 'userName eq "ivy@example.com"'})
        body = found.json()
        assert body["totalResults"] == 1 and body["Resources"][0]["id"] == user["id"]
        assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]

        patch = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {"active": False, "displayName": "Ivy V"}}],
        }
        patched = admin.patch(f"{SCIM}/Users/{user['id']}", json=patch).json()
        assert patched["active"] is False and patched["displayName"] == "Ivy V"

        assert admin.delete(f"{SCIM}/Users/{user['id']}").status_code == 204
        assert admin.get(f"{SCIM}/Users/{user['id']}").status_code == 404


def test_disabled_users_tokens_stop_working(shared_server: RunningServer) -> None:
    identity = shared_server.platform.identity
    with shared_server.admin() as admin:
        user = admin.post(f"{SCIM}/Users", json={"userName": "jim@example.com"}).json()
        record = identity.find("jim@example.com")
        assert record is not None
        token, _ = identity.create_token(record.id, kind="pat", prefix="bstp_", lifetime_s=600)
        with shared_server.client(token) as jim:
            assert jim.get(f"{SCIM}/Me").status_code == 200
            patch = {"Operations": [{"op": "replace", "path": "active", "value": False}]}
            assert admin.patch(f"{SCIM}/Users/{user['id']}", json=patch).is_success
            assert jim.get(f"{SCIM}/Me").status_code == 401


def test_group_membership_including_nested_groups(shared_server: RunningServer) -> None:
    with shared_server.admin() as admin:
        kim = admin.post(f"{SCIM}/Users", json={"userName": "kim@example.com"}).json()
        inner = admin.post(f"{SCIM}/Groups", json={"displayName": "inner"}).json()
        outer = admin.post(f"{SCIM}/Groups", json={"displayName": "outer"}).json()
        add = {"Operations": [{"op": "add", "path": "members", "value": [{"value": kim["id"]}]}]}
        assert admin.patch(f"{SCIM}/Groups/{inner['id']}", json=add).is_success
        nest = {"Operations": [{"op": "add", "path": "members", "value": [{"value": inner["id"]}]}]}
        assert admin.patch(f"{SCIM}/Groups/{outer['id']}", json=nest).is_success
        # A grant to the outer group reaches Kim through the inner one.
        change = {"changes": [{"principal": "outer", "add": ["SELECT"]}]}
        admin.patch("/api/2.1/unity-catalog/permissions/schema/main.default", json=change)
        record = shared_server.platform.identity.find("kim@example.com")
        assert record is not None
        caller = shared_server.platform.identity_cache.caller(record.id)
        assert "outer" in caller.groups and "inner" in caller.groups

        remove = {"Operations": [{"op": "remove", "path": f'members[value eq "{kim["id"]}"]'}]}
        group = admin.patch(f"{SCIM}/Groups/{inner['id']}", json=remove).json()
        assert group["members"] == []
        caller = shared_server.platform.identity_cache.caller(record.id)
        assert "outer" not in caller.groups


def test_me_for_a_service_principal_and_listing(shared_server: RunningServer) -> None:
    with shared_server.admin() as admin:
        sp = admin.post(f"{SCIM}/ServicePrincipals", json={"displayName": "reporter"}).json()
        assert len(sp["applicationId"]) == 36
        listed = admin.get(f"{SCIM}/ServicePrincipals").json()["Resources"]
        assert sp["applicationId"] in [s["applicationId"] for s in listed]
        me = admin.get(f"{SCIM}/Me").json()
        assert me["userName"] == "admin"
        assert "admins" in [g["display"] for g in me["groups"]]
