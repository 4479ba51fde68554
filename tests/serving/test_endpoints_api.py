"""Serving endpoint configs over REST: validation, states, permissions, and alias routing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bastion.errors import NotFound
from bastion.governance.privileges import Privilege
from bastion.governance.securables import SecurableType
from bastion.serving.control import serving_of
from conftest import RunningServer, create_user
from upstream_stub import StubServer, start_stub

EP = "/api/2.0/serving-endpoints"
PERMS = "/api/2.0/permissions/serving-endpoints"
MODELS = "/api/2.1/unity-catalog/models"
KEY = "sk-upstream-secret-42"


@pytest.fixture
def stubs() -> Iterator[tuple[StubServer, StubServer]]:
    a, b = start_stub("answer from A"), start_stub("answer from B")
    yield a, b
    for stub in (a, b):
        stub.shutdown()
        stub.server_close()


@pytest.fixture
def api(server: RunningServer, stubs: tuple[StubServer, StubServer]) -> RunningServer:
    """A server with a secret llm/key and model main.default.ext: v1 → stub A, v2 → stub B."""
    with server.admin() as admin:
        admin.post("/api/2.0/secrets/scopes/create", json={"scope": "llm"})
        admin.post("/api/2.0/secrets/put", json={"scope": "llm", "key": "key", "string_value": KEY})
        admin.post(MODELS, json={"name": "ext", "catalog_name": "main", "schema_name": "default"})
        for stub in stubs:
            r = admin.post(
                f"{MODELS}/versions",
                json={
                    "catalog_name": "main",
                    "schema_name": "default",
                    "model_name": "ext",
                    "external_model": external(stub),
                },
            )
            assert r.status_code == 200, r.text
        admin.put(f"{MODELS}/main.default.ext/aliases/champion", json={"version_num": 1})
    return server


def external(stub: StubServer, key: str = "{{secrets/llm/key}}") -> dict[str, Any]:
    return {
        "provider": "openai",
        "name": "stub-model",
        "openai_config": {"openai_api_key": key, "openai_api_base": stub.base_url},
    }


def champion_endpoint(name: str = "ep", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "config": {
            "served_entities": [
                {
                    "name": "champion",
                    "entity_name": "main.default.ext",
                    "entity_version": "@champion",
                }
            ]
        },
        **extra,
    }


def ask(base_url: str, api_key: str | None) -> str:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.post(
        f"{base_url}/chat/completions",
        json={"model": "stub-model", "messages": [{"role": "user", "content": "hi"}]},
        headers=headers,
        timeout=10,
    )
    return str(response.json()["choices"][0]["message"]["content"])


def assert_invalid(response: httpx.Response, fragment: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error_code", "message"}
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert fragment in body["message"], body["message"]


def test_config_validation(api: RunningServer, stubs: tuple[StubServer, StubServer]) -> None:
    a, b = stubs
    two = [
        {"name": "a", "external_model": external(a)},
        {"name": "b", "external_model": external(b)},
    ]
    with api.admin() as admin:
        bad_sum = {
            "served_entities": two,
            "traffic_config": {
                "routes": [
                    {"served_entity_name": "a", "traffic_percentage": 60},
                    {"served_entity_name": "b", "traffic_percentage": 30},
                ]
            },
        }
        assert_invalid(admin.post(EP, json={"name": "x", "config": bad_sum}), "sum to 100")
        unknown = {
            "served_entities": two,
            "traffic_config": {
                "routes": [
                    {"served_entity_name": "c", "traffic_percentage": 100},
                ]
            },
        }
        assert_invalid(admin.post(EP, json={"name": "x", "config": unknown}), "unknown served")
        bad_alias = champion_endpoint("x")
        bad_alias["config"]["served_entities"][0]["entity_version"] = "@nope"
        assert_invalid(admin.post(EP, json=bad_alias), "no alias '@nope'")
        no_model = champion_endpoint("x")
        no_model["config"]["served_entities"][0]["entity_name"] = "main.default.missing"
        assert_invalid(admin.post(EP, json=no_model), "does not exist")
        plaintext = {
            "served_entities": [
                {
                    "name": "a",
                    "external_model": {
                        "provider": "openai",
                        "name": "m",
                        "openai_config": {"openai_api_key_plaintext": KEY},
                    },
                }
            ]
        }
        assert_invalid(admin.post(EP, json={"name": "x", "config": plaintext}), "secret")
        missing_secret = {
            "served_entities": [
                {"name": "a", "external_model": external(a, "{{secrets/llm/nope}}")}
            ]
        }
        assert_invalid(admin.post(EP, json={"name": "x", "config": missing_secret}), "nope")
        duplicate = {"served_entities": [two[0], two[0]]}
        assert_invalid(admin.post(EP, json={"name": "x", "config": duplicate}), "unique")
        assert_invalid(
            admin.post(EP, json={"name": "x", "config": {"served_entities": []}}), "at least one"
        )
        extra = champion_endpoint("x", surprise=True)
        assert_invalid(admin.post(EP, json=extra), "unknown field 'surprise'")
        assert admin.get(f"{EP}/x").status_code == 404

        split = {
            "served_entities": two,
            "traffic_config": {
                "routes": [
                    {"served_entity_name": "a", "traffic_percentage": 75},
                    {"served_entity_name": "b", "traffic_percentage": 25},
                ]
            },
        }
        created = admin.post(
            EP,
            json={
                "name": "split",
                "config": split,
                "ai_gateway": {"fallback_config": {"enabled": True}},
                "tags": [{"key": "team", "value": "kyoto"}],
            },
        )
        assert created.status_code == 200, created.text
        body = created.json()
        assert KEY not in created.text
        assert body["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
        assert body["config"]["config_version"] == 1
        assert [e["state"]["deployment"] for e in body["config"]["served_entities"]] == [
            "DEPLOYMENT_READY",
            "DEPLOYMENT_READY",
        ]
        assert body["config"]["traffic_config"] == split["traffic_config"]
        assert body["tags"] == [{"key": "team", "value": "kyoto"}]
        assert body["permission_level"] == "CAN_MANAGE"
        assert body["query_url"].endswith("/serving-endpoints/split/invocations")
        assert admin.post(EP, json={"name": "split", "config": split}).status_code == 409

    plan = serving_of(api.platform).router.plan("split")
    assert plan.weights == (75, 25) and plan.fallback and plan.tags == {"team": "kyoto"}
    assert [u.base_url for u in plan.entities] == [a.base_url, b.base_url]
    assert [u.served_entity_name for u in plan.order(0.9)] == ["b", "a"]
    assert plan.entities[0].api_key == KEY and KEY not in repr(plan.entities[0])


def test_alias_move_changes_the_answer_without_restart(
    api: RunningServer, stubs: tuple[StubServer, StubServer]
) -> None:
    a, _b = stubs
    router = serving_of(api.platform).router
    with api.admin() as admin:
        assert admin.post(EP, json=champion_endpoint()).status_code == 200
        (upstream,) = router.plan("ep").entities
        assert (upstream.model_name, upstream.model_version) == ("main.default.ext", "1")
        assert ask(upstream.base_url, upstream.api_key) == "answer from A"
        assert a.seen_authorization[-1] == f"Bearer {KEY}"

        moved = admin.put(f"{MODELS}/main.default.ext/aliases/champion", json={"version_num": 2})
        assert moved.status_code == 200

        plan = router.plan("ep")
        (upstream,) = plan.entities
        assert upstream.model_version == "2" and plan.config_version == 1
        assert ask(upstream.base_url, upstream.api_key) == "answer from B"
        assert (
            admin.get(f"{EP}/ep").json()["config"]["served_entities"][0]["entity_version"]
            == "@champion"
        )


def test_update_config_and_delete(api: RunningServer, stubs: tuple[StubServer, StubServer]) -> None:
    _a, b = stubs
    router = serving_of(api.platform).router
    with api.admin() as admin:
        admin.post(EP, json=champion_endpoint())
        updated = admin.put(
            f"{EP}/ep/config",
            json={
                "served_entities": [
                    {"name": "pinned", "entity_name": "main.default.ext", "entity_version": "2"}
                ]
            },
        )
        assert updated.status_code == 200, updated.text
        assert updated.json()["config"]["config_version"] == 2
        assert router.plan("ep").entities[0].base_url == b.base_url
        tags = admin.patch(f"{EP}/ep/tags", json={"add_tags": [{"key": "k", "value": "v"}]})
        assert tags.json() == {"tags": [{"key": "k", "value": "v"}]}  # EndpointTags
        assert [e["name"] for e in admin.get(EP).json()["endpoints"]] == ["ep"]
        assert admin.delete(f"{EP}/ep").status_code == 200
        assert admin.get(f"{EP}/ep").status_code == 404
    with pytest.raises(NotFound):
        router.plan("ep")


def test_endpoint_needs_execute_and_inference_table_rights(api: RunningServer) -> None:
    _, bob = create_user(api, "bob")
    with api.client(bob) as client:
        denied = client.post(EP, json=champion_endpoint("bobs"))
        assert denied.status_code == 403 and "EXECUTE" in denied.json()["message"]
    with api.admin() as admin:
        admin.patch(
            "/api/2.1/unity-catalog/permissions/registered_model/main.default.ext",
            json={"changes": [{"principal": "bob", "add": ["EXECUTE"]}]},
        )
        admin.post(
            "/api/2.0/secrets/acls/put",
            json={"scope": "llm", "principal": "bob", "permission": "READ"},
        )
        admin.post(
            "/api/2.1/unity-catalog/schemas", json={"name": "locked", "catalog_name": "main"}
        )
    with api.client(bob) as client:
        locked = champion_endpoint(
            "bobs",
            ai_gateway={
                "inference_table_config": {
                    "enabled": True,
                    "catalog_name": "main",
                    "schema_name": "locked",
                }
            },
        )
        assert client.post(EP, json=locked).status_code == 403
        ok = champion_endpoint(
            "bobs",
            ai_gateway={
                "inference_table_config": {
                    "enabled": True,
                    "catalog_name": "main",
                    "schema_name": "default",
                }
            },
        )
        created = client.post(EP, json=ok)
        assert created.status_code == 200, created.text
        assert created.json()["ai_gateway"]["inference_table_config"]["table_name_prefix"] == "bobs"
    plan = serving_of(api.platform).router.plan("bobs")
    assert plan.payload_table == "main.default.bobs_payload"


def test_permissions_api(api: RunningServer) -> None:
    _, bob = create_user(api, "bob")
    with api.admin() as admin:
        admin.post(EP, json=champion_endpoint())
        endpoint_id = admin.get(f"{EP}/ep").json()["id"]
    with api.client(bob) as client:
        assert client.get(f"{EP}/ep").status_code == 403
        assert client.get(EP).json()["endpoints"] == []
        grant = {"access_control_list": [{"user_name": "bob", "permission_level": "CAN_MANAGE"}]}
        assert client.patch(f"{PERMS}/ep", json=grant).status_code == 403
    with api.admin() as admin:
        patched = admin.patch(
            f"{PERMS}/ep",
            json={"access_control_list": [{"user_name": "bob", "permission_level": "CAN_VIEW"}]},
        )
        assert patched.status_code == 200, patched.text
        doc = patched.json()
        assert doc["object_id"] == f"/serving-endpoints/{endpoint_id}"
        assert doc["object_type"] == "serving-endpoint"
        by_name = {
            e.get("user_name") or e.get("group_name"): e["all_permissions"]
            for e in doc["access_control_list"]
        }
        assert by_name["bob"] == [{"permission_level": "CAN_VIEW", "inherited": False}]
        assert by_name["admin"][0]["permission_level"] == "CAN_MANAGE"  # the owner
        assert by_name["admins"][0]["inherited"] is True
        levels = admin.get(f"{PERMS}/{endpoint_id}/permissionLevels").json()
        assert [lv["permission_level"] for lv in levels["permission_levels"]] == [
            "CAN_VIEW",
            "CAN_QUERY",
            "CAN_MANAGE",
        ]
    with api.client(bob) as client:
        view = client.get(f"{EP}/ep")
        assert view.status_code == 200 and view.json()["permission_level"] == "CAN_VIEW"
        assert client.put(f"{EP}/ep/config", json={"served_entities": []}).status_code == 403
        assert client.delete(f"{EP}/ep").status_code == 403
    with api.admin() as admin:
        replaced = admin.put(
            f"{PERMS}/{endpoint_id}",
            json={
                "access_control_list": [{"group_name": "users", "permission_level": "CAN_QUERY"}]
            },
        ).json()
        names = {e.get("user_name") or e.get("group_name") for e in replaced["access_control_list"]}
        assert names == {"admin", "users", "admins"}
        for bad, fragment in [
            (
                {"user_name": "bob", "group_name": "users", "permission_level": "CAN_VIEW"},
                "exactly one",
            ),
            ({"user_name": "nobody", "permission_level": "CAN_VIEW"}, "does not exist"),
            ({"group_name": "bob", "permission_level": "CAN_VIEW"}, "does not exist"),
            ({"user_name": "bob", "permission_level": "IS_OWNER"}, "permission level"),
        ]:
            assert_invalid(
                admin.patch(f"{PERMS}/ep", json={"access_control_list": [bad]}), fragment
            )
    with api.client(bob) as client:  # through the users group now
        assert client.get(f"{EP}/ep").json()["permission_level"] == "CAN_QUERY"
    bob_record = api.platform.identity.find("bob")
    assert bob_record is not None
    caller = api.platform.identity_cache.caller(bob_record.id)
    node = api.platform.authorizer.node(SecurableType.SERVING_ENDPOINT, "ep")
    assert api.platform.authorizer.has(caller, Privilege.CAN_QUERY, node)  # a grant, as stored
