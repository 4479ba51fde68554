"""Bad input gets a 4xx in the error shape, never a 500 or a trace; secrets never leak."""

from __future__ import annotations

import logging

import pytest

from bastion.metastore.models import Base
from conftest import ADMIN_PASSWORD, ADMIN_TOKEN, RunningServer

UC = "/api/2.1/unity-catalog"
SCIM = "/api/2.0/preview/scim/v2"

BAD_REQUESTS = [
    ("POST", f"{UC}/catalogs", {"name": "ok", "unknown_field": 1}, 400),
    ("POST", f"{UC}/catalogs", {"name": "bad name"}, 400),
    ("POST", f"{UC}/catalogs", {"name": "a.b"}, 400),
    ("POST", f"{UC}/catalogs", {"name": "-x"}, 400),
    ("POST", f"{UC}/catalogs", {"name": "x" * 300}, 400),
    ("POST", f"{UC}/catalogs", {"name": 5}, 400),
    ("POST", f"{UC}/catalogs", [], 400),
    ("POST", f"{UC}/catalogs", {}, 400),
    ("POST", f"{UC}/schemas", {"catalog_name": "nope", "name": "s"}, 404),
    ("POST", f"{UC}/schemas", {"catalog_name": "main", "name": "s;drop"}, 400),
    ("GET", f"{UC}/catalogs/no_such", None, 404),
    ("GET", f"{UC}/catalogs/bad%20name", None, 400),
    ("GET", f"{UC}/schemas/only_one_part", None, 400),
    ("GET", f"{UC}/schemas?catalog_name=", None, 400),
    ("GET", f"{UC}/schemas", None, 400),
    ("GET", f"{UC}/permissions/bogus/main", None, 400),
    ("PATCH", f"{UC}/permissions/catalog/main", {"changes": []}, 400),
    (
        "PATCH",
        f"{UC}/permissions/catalog/main",
        {"changes": [{"principal": "users", "add": ["FLY"]}]},
        400,
    ),
    (
        "PATCH",
        f"{UC}/permissions/catalog/main",
        {"changes": [{"principal": "users", "add": ["CAN_QUERY"]}]},
        400,
    ),
    (
        "PATCH",
        f"{UC}/permissions/catalog/main",
        {"changes": [{"principal": "ghost@example.com", "add": ["USE_CATALOG"]}]},
        400,
    ),
    (
        "POST",
        f"{UC}/tables",
        {
            "catalog_name": "main",
            "schema_name": "default",
            "name": "t",
            "columns": [{"name": "x", "type_text": "blob"}],
        },
        400,
    ),
    (
        "POST",
        f"{UC}/tables",
        {
            "catalog_name": "main",
            "schema_name": "default",
            "name": "t",
            "columns": [{"name": "1x", "type_text": "int"}],
        },
        400,
    ),
    (
        "POST",
        f"{UC}/tables",
        {"catalog_name": "main", "schema_name": "default", "name": "t", "columns": []},
        400,
    ),
    ("DELETE", f"{UC}/catalogs/main", None, 400),  # not empty
    ("POST", f"{SCIM}/Users", {"userName": "has space"}, 400),
    ("POST", f"{SCIM}/Users", {"userName": "admin"}, 409),
    ("POST", f"{SCIM}/Users", {"userName": "p@example.com", "password": "short"}, 400),
    ("GET", f"{SCIM}/Users/abc", None, 400),
    ("GET", f"{SCIM}/Users/99999", None, 404),
    ("GET", f"{SCIM}/Users?filter=userName%20sw%20%22a%22", None, 400),
    ("PATCH", f"{SCIM}/Groups/1", {"Operations": [{"op": "explode"}]}, 400),
    ("DELETE", f"{SCIM}/Groups/1", None, 400),  # built-in group
    ("POST", "/api/2.0/token/create", {"lifetime_seconds": -5}, 400),
    ("POST", "/api/2.0/token/create", {"lifetime_seconds": 10**12}, 400),
    ("POST", "/api/2.0/token/delete", {"token_id": "nope"}, 404),
    ("GET", "/api/2.0/nothing-here", None, 404),
    ("PUT", f"{UC}/catalogs", None, 405),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), BAD_REQUESTS)
def test_bad_requests_get_a_clear_4xx(
    shared_server: RunningServer, method: str, path: str, body: object, status: int
) -> None:
    with shared_server.admin() as admin:
        response = admin.request(method, path, json=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert isinstance(error["error_code"], str) and error["error_code"]
    assert isinstance(error["message"], str) and "Traceback" not in error["message"]


def test_malformed_json_and_oversized_bodies(server: RunningServer) -> None:
    with server.admin() as admin:
        malformed = admin.post(
            f"{UC}/catalogs", content=b'{"name": ', headers={"content-type": "application/json"}
        )
        assert malformed.status_code == 400
        assert malformed.json()["error_code"] == "MALFORMED_REQUEST"

        big = b'{"name": "x", "comment": "' + b"a" * (2 * 1024 * 1024) + b'"}'
        too_large = admin.post(
            f"{UC}/catalogs", content=big, headers={"content-type": "application/json"}
        )
        assert too_large.status_code == 413
        assert too_large.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"

        def chunks():  # type: ignore[no-untyped-def]
            for _ in range(40):
                yield b"a" * 65536

        streamed = admin.post(
            f"{UC}/catalogs", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413
        assert admin.get(f"{UC}/catalogs/x").status_code == 404  # nothing half-written


def test_requests_carry_a_request_id(server: RunningServer) -> None:
    with server.admin() as admin:
        response = admin.get(f"{UC}/catalogs")
    assert len(response.headers["x-request-id"]) == 32
    assert float(response.headers["x-bastion-overhead-ms"]) >= 0


def test_no_secret_reaches_logs_or_audit(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with server.client() as anon, server.admin() as admin:
        login = anon.post(
            "/oidc/v1/token",
            data={"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD},
        ).json()
        anon.post(
            "/oidc/v1/token",
            data={"grant_type": "password", "username": "admin", "password": "Wrong-Secret-1"},
        )
        created = admin.post(
            f"{SCIM}/Users", json={"userName": "sec@example.com", "password": "User-Pass-123"}
        )
        assert created.status_code == 201
        pat = admin.post("/api/2.0/token/create", json={"comment": "ci"}).json()["token_value"]
        events = admin.get("/api/2.0/bastion/audit", params={"limit": 1000}).json()["events"]
    actions = {e["action_name"] for e in events}
    assert {"tokenLogin", "createUser", "createToken"} <= actions
    secrets = [
        ADMIN_PASSWORD,
        ADMIN_TOKEN,
        "Wrong-Secret-1",
        "User-Pass-123",
        pat,
        login["access_token"],
        login["refresh_token"],
    ]
    audit_text = str(events)
    log_text = caplog.text
    with server.platform.metastore.engine.connect() as conn:
        db_dump = "\n".join(
            str(row)
            for table in Base.metadata.sorted_tables
            for row in conn.execute(table.select())
        )
    for secret in secrets:
        assert secret not in audit_text
        assert secret not in log_text
        assert secret not in db_dump
