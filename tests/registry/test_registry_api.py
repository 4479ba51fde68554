"""Registered models over REST: CREATE MODEL, immutable versions, EXECUTE, tags and aliases."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import httpx
import pytest

from conftest import RunningServer, create_user

MODELS = "/api/2.1/unity-catalog/models"


@pytest.fixture
def api(server: RunningServer) -> RunningServer:
    return server


def gguf_file(path: Path, payload: bytes = b"weights") -> Path:
    path.write_bytes(b"GGUF" + payload)
    return path


def create_model(client: httpx.Client, name: str, schema: str = "default") -> httpx.Response:
    return client.post(MODELS, json={"name": name, "catalog_name": "main", "schema_name": schema})


def stage(client: httpx.Client, source: Path) -> str:
    """Upload a local file or folder into the caller's staging area; its ``staging:`` name."""
    base = f"t/{uuid.uuid4().hex[:8]}/{source.name}"
    files = [source] if source.is_file() else [p for p in source.rglob("*") if p.is_file()]
    for path in files:
        relative = base if path == source else f"{base}/{path.relative_to(source).as_posix()}"
        put = client.put(f"/api/2.0/bastion/staging/files/{relative}", content=path.read_bytes())
        assert put.status_code == 200, put.text
    return f"staging:{base}"


def register(client: httpx.Client, model: str, source: Path | str) -> httpx.Response:
    """Register a version; a local ``Path`` is uploaded to the caller's staging area first."""
    if isinstance(source, Path):
        source = stage(client, source)
    catalog, schema, name = model.split(".")
    return client.post(
        f"{MODELS}/versions",
        json={
            "catalog_name": catalog,
            "schema_name": schema,
            "model_name": name,
            "source": str(source),
        },
    )


def test_create_model_needs_create_model(api: RunningServer) -> None:
    _, bob = create_user(api, "bob")
    with api.admin() as admin:
        r = admin.post(
            "/api/2.1/unity-catalog/schemas", json={"name": "locked", "catalog_name": "main"}
        )
        assert r.status_code == 200, r.text
        r = admin.patch(
            "/api/2.1/unity-catalog/permissions/schema/main.locked",
            json={"changes": [{"principal": "users", "add": ["USE_SCHEMA"]}]},
        )
        assert r.status_code == 200, r.text
    with api.client(bob) as client:
        denied = create_model(client, "m", schema="locked")
        assert denied.status_code == 403
        assert denied.json()["error_code"] == "PERMISSION_DENIED"
        assert "CREATE MODEL" in denied.json()["message"]
        created = create_model(client, "m")  # users hold CREATE MODEL on main.default
        assert created.status_code == 200, created.text
        body = created.json()
        assert body["full_name"] == "main.default.m" and body["owner"] == "bob"
        assert body["aliases"] == []
        assert create_model(client, "m").status_code == 409
        listed = client.get(MODELS, params={"catalog_name": "main", "schema_name": "default"})
        assert [m["full_name"] for m in listed.json()["registered_models"]] == ["main.default.m"]


def test_versions_are_hashed_immutable_and_need_execute(api: RunningServer, tmp_path: Path) -> None:
    _, bob = create_user(api, "bob")
    _, carol = create_user(api, "carol")
    source = gguf_file(tmp_path / "tiny.gguf")
    with api.client(bob) as client:
        assert create_model(client, "m").status_code == 200
        v1 = register(client, "main.default.m", source)
        assert v1.status_code == 200, v1.text
        info = v1.json()
        assert info["version"] == 1 and info["status"] == "READY"
        assert info["artifact_type"] == "gguf"
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        assert info["content_hash"] == f"sha256:{digest}"
        stored = Path(info["storage_location"])
        assert stored.is_relative_to(api.platform.settings.home / "artifacts")
        assert stored.read_bytes() == source.read_bytes()

        not_gguf = tmp_path / "notes.txt"
        not_gguf.write_text("hello")
        failed = register(client, "main.default.m", not_gguf).json()
        assert failed["version"] == 2 and failed["status"] == "FAILED_REGISTRATION"
        assert "GGUF" in failed["status_message"]

        assert register(client, "main.default.m", "relative/x.gguf").status_code == 400
        changed = client.patch(f"{MODELS}/main.default.m/versions/1", json={"source": "/x"})
        assert changed.status_code == 400  # the artifact of a version never changes
        tagged = client.patch(
            f"{MODELS}/main.default.m/versions/1",
            json={"comment": "first", "tags": [{"key": "stage", "value": "dev"}]},
        ).json()
        assert tagged["comment"] == "first"
        assert tagged["tags"] == [{"key": "stage", "value": "dev"}]
        assert tagged["content_hash"] == info["content_hash"]

    with api.client(carol) as client:
        assert client.get(f"{MODELS}/main.default.m/versions").status_code == 403
        assert client.get(f"{MODELS}/main.default.m/versions/1").status_code == 403
        assert register(client, "main.default.m", source).status_code == 403
    with api.client(bob) as client:
        grant = client.patch(
            "/api/2.1/unity-catalog/permissions/registered_model/main.default.m",
            json={"changes": [{"principal": "carol", "add": ["EXECUTE"]}]},
        )
        assert grant.status_code == 200, grant.text
    with api.client(carol) as client:
        versions = client.get(f"{MODELS}/main.default.m/versions").json()["model_versions"]
        assert [v["version"] for v in versions] == [2, 1]
        assert client.get(f"{MODELS}/main.default.m/versions/1").status_code == 200
        assert client.delete(f"{MODELS}/main.default.m/versions/1").status_code == 403


def test_aliases_move_between_versions(api: RunningServer, tmp_path: Path) -> None:
    _, bob = create_user(api, "bob")
    _, carol = create_user(api, "carol")
    with api.client(bob) as client:
        create_model(client, "m")
        register(client, "main.default.m", gguf_file(tmp_path / "a.gguf", b"a"))
        register(client, "main.default.m", gguf_file(tmp_path / "b.gguf", b"b"))
        alias_url = f"{MODELS}/main.default.m/aliases/champion"
        set_ = client.put(alias_url, json={"version_num": 1})
        assert set_.status_code == 200, set_.text
        assert set_.json() == {
            "alias_name": "champion",
            "version_num": 1,
            "catalog_name": "main",
            "schema_name": "default",
            "model_name": "m",
        }
        assert client.get(alias_url).json()["version"] == 1
        assert client.put(alias_url, json={"version_num": 2}).status_code == 200
        by_alias = client.get(alias_url).json()
        assert by_alias["version"] == 2
        assert by_alias["aliases"][0]["alias_name"] == "champion"
        model = client.get(f"{MODELS}/main.default.m").json()
        assert [(a["alias_name"], a["version_num"]) for a in model["aliases"]] == [("champion", 2)]
        assert client.put(alias_url, json={"version_num": 9}).status_code == 404
        bad = client.put(f"{MODELS}/main.default.m/aliases/7", json={"version_num": 1})
        assert bad.status_code == 400
    with api.client(carol) as client:
        assert client.put(alias_url, json={"version_num": 1}).status_code == 403
    with api.client(bob) as client:
        assert client.delete(alias_url).status_code == 200
        assert client.get(alias_url).status_code == 404


def test_external_model_versions_take_only_secret_references(api: RunningServer) -> None:
    with api.admin() as admin:
        create_model(admin, "ext")
        base = {"catalog_name": "main", "schema_name": "default", "model_name": "ext"}
        plaintext = admin.post(
            f"{MODELS}/versions",
            json={
                **base,
                "external_model": {
                    "provider": "openai",
                    "name": "gpt-4o",
                    "openai_config": {"openai_api_key_plaintext": "sk-live"},
                },
            },
        )
        assert plaintext.status_code == 400
        assert "secret" in plaintext.json()["message"]
        assert admin.post("/api/2.0/secrets/scopes/create", json={"scope": "llm"}).is_success
        put = {"scope": "llm", "key": "anthropic", "string_value": "sk-ant"}
        assert admin.post("/api/2.0/secrets/put", json=put).is_success
        ok = admin.post(
            f"{MODELS}/versions",
            json={
                **base,
                "external_model": {
                    "provider": "anthropic",
                    "name": "claude-sonnet-4-5",
                    "anthropic_config": {"anthropic_api_key": "{{secrets/llm/anthropic}}"},
                },
            },
        ).json()
        assert ok["status"] == "READY" and ok["artifact_type"] == "external_model"
        assert ok["external_model"]["anthropic_config"] == {
            "anthropic_api_key": "{{secrets/llm/anthropic}}",
            "anthropic_api_base": "https://api.anthropic.com",
        }
        assert ok["content_hash"].startswith("sha256:")


def test_model_tags_and_delete(api: RunningServer, tmp_path: Path) -> None:
    with api.admin() as admin:
        create_model(admin, "m")
        register(admin, "main.default.m", gguf_file(tmp_path / "a.gguf"))
        patched = admin.patch(
            f"{MODELS}/main.default.m",
            json={"comment": "c", "tags": [{"key": "team", "value": "kyoto"}]},
        ).json()
        assert patched["tags"] == [{"key": "team", "value": "kyoto"}] and patched["comment"] == "c"
        removed = admin.patch(f"{MODELS}/main.default.m", json={"delete_tags": ["team"]})
        assert removed.json()["tags"] == []
        artifacts = api.platform.settings.home / "artifacts" / "main" / "default" / "m"
        assert artifacts.exists()
        assert admin.delete(f"{MODELS}/main.default.m").status_code == 200
        assert admin.get(f"{MODELS}/main.default.m").status_code == 404
        assert not artifacts.exists()
