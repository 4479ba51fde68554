"""Every route × every kind of caller gets exactly the right status.

Callers: admin, owner (of catalog ``cat`` and what is in it), grantee (USE + SELECT), a user
with no grants there, no credential, an expired token, a revoked token, and an admin token
that lacks the scope the route needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bastion.bootstrap import initialize
from bastion.clock import ManualClock
from bastion.platform import Platform
from conftest import RunningServer, ServerThread, make_settings

CALLERS = ("admin", "owner", "grantee", "nongrantee", "anonymous", "expired", "revoked", "noscope")
SCIM = "/api/2.0/preview/scim/v2"
UC = "/api/2.1/unity-catalog"
COLUMNS = [{"name": "id", "type_text": "bigint"}]


@dataclass
class Route:
    method: str
    path: str
    expected: str  # one status per caller, in CALLERS order
    body: dict[str, Any] | None = None


def _codes(text: str) -> list[int]:
    codes = [int(c) for c in text.split()]
    assert len(codes) == len(CALLERS)
    return codes


ROUTES = [
    Route("GET", "/healthz", "200 200 200 200 200 200 200 200"),
    Route("GET", f"{SCIM}/Me", "200 200 200 200 401 401 401 200"),
    Route("GET", f"{SCIM}/Users", "200 200 200 200 401 401 401 403"),
    Route("POST", f"{SCIM}/Users", "201 403 403 403 401 401 401 403", {"userName": "u_{who}"}),
    Route("GET", f"{SCIM}/Users/{{victim_id}}", "200 200 200 200 401 401 401 403"),
    Route(
        "PATCH",
        f"{SCIM}/Users/{{victim_id}}",
        "200 403 403 403 401 401 401 403",
        {"Operations": [{"op": "replace", "path": "displayName", "value": "V"}]},
    ),
    Route("DELETE", f"{SCIM}/Users/{{doomed_user_id}}", "204 403 403 403 401 401 401 403"),
    Route("GET", f"{SCIM}/Groups", "200 200 200 200 401 401 401 403"),
    Route("POST", f"{SCIM}/Groups", "201 403 403 403 401 401 401 403", {"displayName": "g_{who}"}),
    Route(
        "PATCH",
        f"{SCIM}/Groups/{{group_id}}",
        "200 403 403 403 401 401 401 403",
        {"Operations": [{"op": "add", "path": "members", "value": [{"value": "{victim_id}"}]}]},
    ),
    Route("GET", f"{SCIM}/ServicePrincipals", "200 200 200 200 401 401 401 403"),
    Route(
        "POST",
        f"{SCIM}/ServicePrincipals",
        "201 403 403 403 401 401 401 403",
        {"displayName": "sp_{who}"},
    ),
    Route(
        "POST",
        "/api/2.0/accounts/servicePrincipals/{sp_id}/credentials/secrets",
        "200 403 403 403 401 401 401 403",
    ),
    Route("GET", "/api/2.0/token/list", "200 200 200 200 401 401 401 403"),
    Route("POST", "/api/2.0/token/create", "200 200 200 200 401 401 401 403", {"comment": "m"}),
    Route("GET", f"{UC}/catalogs", "200 200 200 200 401 401 401 403"),
    Route("POST", f"{UC}/catalogs", "200 403 403 403 401 401 401 403", {"name": "c_{who}"}),
    Route("GET", f"{UC}/catalogs/cat", "200 200 200 403 401 401 401 403"),
    Route("PATCH", f"{UC}/catalogs/cat", "200 200 403 403 401 401 401 403", {"comment": "c"}),
    Route("DELETE", f"{UC}/catalogs/doomed_{{who}}", "200 200 403 403 401 401 401 403"),
    Route("GET", f"{UC}/schemas?catalog_name=cat", "200 200 200 403 401 401 401 403"),
    Route(
        "POST",
        f"{UC}/schemas",
        "200 200 403 403 401 401 401 403",
        {"catalog_name": "cat", "name": "s_{who}"},
    ),
    Route("GET", f"{UC}/schemas/cat.sch", "200 200 200 403 401 401 401 403"),
    Route("PATCH", f"{UC}/schemas/cat.sch", "200 200 403 403 401 401 401 403", {"comment": "s"}),
    Route("DELETE", f"{UC}/schemas/cat.doomed_{{who}}", "200 200 403 403 401 401 401 403"),
    Route(
        "POST",
        f"{UC}/tables",
        "200 200 403 403 401 401 401 403",
        {"catalog_name": "cat", "schema_name": "sch", "name": "t_{who}", "columns": COLUMNS},
    ),
    Route(
        "GET", f"{UC}/tables?catalog_name=cat&schema_name=sch", "200 200 200 403 401 401 401 403"
    ),
    Route("GET", f"{UC}/tables/cat.sch.t", "200 200 200 403 401 401 401 403"),
    Route("DELETE", f"{UC}/tables/cat.sch.doomed_{{who}}", "200 200 403 403 401 401 401 403"),
    Route("GET", f"{UC}/permissions/table/cat.sch.t", "200 200 200 403 401 401 401 403"),
    Route(
        "PATCH",
        f"{UC}/permissions/table/cat.sch.t",
        "200 200 403 403 401 401 401 403",
        {"changes": [{"principal": "bystanders", "add": ["MODIFY"]}]},
    ),
    Route("GET", f"{UC}/effective-permissions/table/cat.sch.t", "200 200 200 403 401 401 401 403"),
    Route("GET", f"{UC}/permissions/catalog/cat", "200 200 200 403 401 401 401 403"),
    Route(
        "PATCH",
        f"{UC}/permissions/catalog/cat",
        "200 200 403 403 401 401 401 403",
        {"changes": [{"principal": "bystanders", "add": ["USE_CATALOG"]}]},
    ),
    Route("GET", "/api/2.0/bastion/audit", "200 403 403 403 401 401 401 403"),
]


@dataclass
class World:
    server: RunningServer
    tokens: dict[str, str | None]
    ids: dict[str, str]


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[World]:
    url = database_url
    clock = ManualClock()
    platform = Platform(make_settings(tmp_path / "home", url), clock)
    initialize(platform)
    with ServerThread(platform) as base:
        server = RunningServer(base, platform)
        yield _build_world(server, clock)
    platform.close()


def _build_world(server: RunningServer, clock: ManualClock) -> World:
    identity = server.platform.identity
    tokens: dict[str, str | None] = {"admin": server.admin_token, "anonymous": None}
    ids: dict[str, str] = {}
    with server.admin() as admin:
        for name in ("owner", "grantee", "nongrantee", "victim", "doomed"):
            r = admin.post(f"{SCIM}/Users", json={"userName": f"{name}@example.com"})
            assert r.status_code == 201, r.text
            ids[f"{name}_user_id" if name == "doomed" else f"{name}_id"] = r.json()["id"]
        ids["victim_id"] = ids.pop("victim_id")
        r = admin.post(f"{SCIM}/Groups", json={"displayName": "bystanders"})
        ids["group_id"] = r.json()["id"]
        ids["sp_id"] = admin.post(f"{SCIM}/ServicePrincipals", json={"displayName": "bot"}).json()[
            "id"
        ]
        assert admin.post(f"{UC}/catalogs", json={"name": "cat"}).status_code == 200
        assert admin.patch(f"{UC}/catalogs/cat", json={"owner": "owner@example.com"}).is_success
        for who in ("admin", "owner", "grantee", "nongrantee"):
            assert admin.post(f"{UC}/catalogs", json={"name": f"doomed_{who}"}).is_success
            admin.patch(f"{UC}/catalogs/doomed_{who}", json={"owner": "owner@example.com"})

    def pat(name: str, **kwargs: Any) -> str:
        record = identity.find(name)
        assert record is not None
        raw, _ = identity.create_token(record.id, kind="pat", prefix="bstp_", **kwargs)
        return raw

    for who in ("owner", "grantee", "nongrantee"):
        tokens[who] = pat(f"{who}@example.com", lifetime_s=10_000)
    tokens["expired"] = pat("grantee@example.com", lifetime_s=60)
    tokens["revoked"] = pat("grantee@example.com", lifetime_s=10_000)
    tokens["noscope"] = pat("admin", lifetime_s=None, scopes=("sql",))

    with server.client(tokens["owner"]) as owner:
        assert owner.post(f"{UC}/schemas", json={"catalog_name": "cat", "name": "sch"}).is_success
        for who in ("admin", "owner", "grantee", "nongrantee"):
            assert owner.post(
                f"{UC}/schemas", json={"catalog_name": "cat", "name": f"doomed_{who}"}
            ).is_success
        for table in ("t", *(f"doomed_{w}" for w in ("admin", "owner", "grantee", "nongrantee"))):
            r = owner.post(
                f"{UC}/tables",
                json={
                    "catalog_name": "cat",
                    "schema_name": "sch",
                    "name": table,
                    "columns": COLUMNS,
                },
            )
            assert r.status_code == 200, r.text
        grant = [{"principal": "grantee@example.com", "add": ["USE_CATALOG"]}]
        assert owner.patch(f"{UC}/permissions/catalog/cat", json={"changes": grant}).is_success
        grant = [{"principal": "grantee@example.com", "add": ["USE_SCHEMA", "SELECT"]}]
        assert owner.patch(f"{UC}/permissions/schema/cat.sch", json={"changes": grant}).is_success

    with server.client(tokens["revoked"]) as revoked:
        token_id = next(
            t["token_id"]
            for t in revoked.get("/api/2.0/token/list").json()["token_infos"]
            if identity.find_token(tokens["revoked"] or "")
            and t["token_id"] == identity.find_token(tokens["revoked"] or "").token_id  # type: ignore[union-attr]
        )
        assert revoked.post("/api/2.0/token/delete", json={"token_id": token_id}).is_success
    clock.advance(120)  # the 60-second token has now expired
    return World(server, tokens, ids)


def _fill(value: Any, who: str, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(who=who, **ids)
    if isinstance(value, list):
        return [_fill(v, who, ids) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, who, ids) for k, v in value.items()}
    return value


def test_every_route_for_every_caller(world: World) -> None:
    mismatches = []
    clients = {caller: world.server.client(world.tokens[caller]) for caller in CALLERS}
    for route in ROUTES:
        for caller, expected in zip(CALLERS, _codes(route.expected), strict=True):
            path = _fill(route.path, caller, world.ids)
            body = _fill(route.body, caller, world.ids) if route.body is not None else None
            response = clients[caller].request(route.method, path, json=body)
            if response.status_code != expected:
                mismatches.append(
                    f"{route.method} {path} as {caller}: {response.status_code} "
                    f"(expected {expected}) {response.text[:200]}"
                )
            elif expected >= 400:
                error = response.json()
                assert set(error) >= {"error_code", "message"}, error
    for client in clients.values():
        client.close()
    assert not mismatches, "\n".join(mismatches)
