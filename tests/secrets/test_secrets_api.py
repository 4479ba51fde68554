"""Secrets: scopes, keys and ACLs over REST; values encrypted at rest and never returned."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from bastion.secrets import SecretReference, secrets_of
from conftest import RunningServer, create_user

SECRET = "sk-test-VERY-secret-value-0123456789"
API = "/api/2.0/secrets"


@pytest.fixture
def api(server: RunningServer) -> RunningServer:
    return server


def put(client: httpx.Client, scope: str, key: str, value: str) -> httpx.Response:
    return client.post(f"{API}/put", json={"scope": scope, "key": key, "string_value": value})


def test_secret_values_are_never_returned(api: RunningServer) -> None:
    with api.admin() as admin:
        assert admin.post(f"{API}/scopes/create", json={"scope": "llm"}).status_code == 200
        assert admin.post(f"{API}/scopes/create", json={"scope": "llm"}).status_code == 409
        assert put(admin, "llm", "openai", SECRET).status_code == 200
        responses = [
            admin.get(f"{API}/scopes/list"),
            admin.get(f"{API}/list", params={"scope": "llm"}),
            admin.get(f"{API}/acls/list", params={"scope": "llm"}),
            admin.get(f"{API}/get", params={"scope": "llm", "key": "openai"}),
            admin.get("/api/2.0/bastion/audit", params={"limit": 1000}),
        ]
        for response in responses:
            assert SECRET not in response.text
        assert responses[0].json()["scopes"] == [{"name": "llm", "backend_type": "BASTION"}]
        listed = responses[1].json()["secrets"]
        assert [s["key"] for s in listed] == ["openai"]
        assert set(listed[0]) == {"key", "last_updated_timestamp"}
        assert responses[3].status_code == 404  # there is no API that reads a value
        assert responses[4].status_code == 200
    # Only the server itself can resolve a reference, in-process.
    assert secrets_of(api.platform).resolve(SecretReference("llm", "openai")) == SECRET


def test_secrets_are_encrypted_at_rest(api: RunningServer) -> None:
    with api.admin() as admin:
        admin.post(f"{API}/scopes/create", json={"scope": "llm"})
        put(admin, "llm", "openai", SECRET)
    engine = api.platform.metastore.engine
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT ciphertext FROM secrets")).scalars().all()
    audit = api.platform.audit.query(limit=10_000)  # system.access.audit (Delta), flushed first
    assert len(rows) == 1 and SECRET not in rows[0] and rows[0].startswith("gAAAAA")
    assert any(e["service_name"] == "secrets" for e in audit)
    assert all(SECRET not in str(e["request_params"]) for e in audit)
    url = api.platform.settings.resolved_database_url
    if url.startswith("sqlite"):
        db = Path(url.removeprefix("sqlite:///"))
        for path in (db, db.with_name(db.name + "-wal")):
            if path.exists():
                assert SECRET.encode() not in path.read_bytes()


def test_scope_acls(api: RunningServer) -> None:
    _, bob = create_user(api, "bob")
    _, carol = create_user(api, "carol")
    with api.client(bob) as client:
        assert client.post(f"{API}/scopes/create", json={"scope": "bobs"}).status_code == 200
        assert put(client, "bobs", "k", SECRET).status_code == 200  # creator has MANAGE
    with api.client(carol) as client:
        assert client.get(f"{API}/list", params={"scope": "bobs"}).status_code == 403
        assert put(client, "bobs", "k", "overwrite").status_code == 403
        assert client.get(f"{API}/scopes/list").json()["scopes"] == []
    with api.client(bob) as client:
        granted = client.post(
            f"{API}/acls/put", json={"scope": "bobs", "principal": "carol", "permission": "READ"}
        )
        assert granted.status_code == 200, granted.text
        acls = client.get(f"{API}/acls/list", params={"scope": "bobs"}).json()["items"]
        assert {"principal": "carol", "permission": "READ"} in acls
    with api.client(carol) as client:
        assert client.get(f"{API}/list", params={"scope": "bobs"}).status_code == 200
        assert put(client, "bobs", "k", "overwrite").status_code == 403
        assert client.post(f"{API}/scopes/delete", json={"scope": "bobs"}).status_code == 403
    with api.client(bob) as client:
        assert client.post(f"{API}/delete", json={"scope": "bobs", "key": "k"}).status_code == 200
        assert client.post(f"{API}/scopes/delete", json={"scope": "bobs"}).status_code == 200
        assert client.get(f"{API}/list", params={"scope": "bobs"}).status_code == 404


def test_bad_input(api: RunningServer) -> None:
    with api.admin() as admin:
        assert admin.post(f"{API}/scopes/create", json={"scope": "a/b"}).status_code == 400
        admin.post(f"{API}/scopes/create", json={"scope": "s"})
        both = admin.post(
            f"{API}/put",
            json={"scope": "s", "key": "k", "string_value": "x", "bytes_value": "eA=="},
        )
        assert both.status_code == 400
        assert put(admin, "missing", "k", "x").status_code == 404
        bad = admin.post(
            f"{API}/acls/put", json={"scope": "s", "principal": "admins", "permission": "OWN"}
        )
        assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
