"""Hole 3: no user input names a server path outside the caller's own staging area (or a
root an admin configured); refused paths all get one error; artifacts are copied, bounded."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bastion.bootstrap import initialize
from bastion.platform import Platform
from conftest import RunningServer, ServerThread, create_user, make_settings
from upstream_stub import StubServer, external_entity, start_stub

UC = "/api/2.1/unity-catalog"
STAGING = "/api/2.0/bastion/staging/files"
GGUF = b"GGUF" + b"\0" * 60


def _register(client: httpx.Client, model: str, source: str) -> httpx.Response:
    return client.post(
        f"{UC}/models/versions",
        json={
            "catalog_name": "main",
            "schema_name": "default",
            "model_name": model,
            "source": source,
        },
    )


def _model(client: httpx.Client, name: str) -> None:
    body = {"catalog_name": "main", "schema_name": "default", "name": name}
    assert client.post(f"{UC}/models", json=body).status_code == 200


def test_every_server_path_outside_the_callers_area_is_refused_alike(
    server: RunningServer, tmp_path: Path
) -> None:
    home = server.platform.settings.home
    _, alice = create_user(server, "alice@example.com")
    _, mallory = create_user(server, "mallory@example.com")
    with server.client(alice) as client:
        assert client.put(f"{STAGING}/mine/model.gguf", content=GGUF).status_code == 200
        _model(client, "alices")
        registered = _register(client, "alices", "staging:mine/model.gguf")
        assert registered.status_code == 200, registered.text
        artifact = registered.json()["storage_location"]
    alice_id = server.platform.identity.find("alice@example.com").id  # type: ignore[union-attr]
    outside = tmp_path / "outside.gguf"
    outside.write_bytes(GGUF)
    attempts = [
        "/etc/passwd",
        "/dev/zero",
        "/proc/self/environ",
        str(home / "metastore.db"),
        str(home / "secret.key"),
        artifact,  # another user's artifact
        str(home / "staging" / str(alice_id) / "mine" / "model.gguf"),  # another user's upload
        f"staging:../{alice_id}/mine/model.gguf",
        "staging:/../../secret.key",
        "staging:missing.gguf",
        str(outside),  # a real GGUF, but in no configured root
        "/no/such/file.gguf",
        "relative/path.gguf",
        "",
    ]
    with server.client(mallory) as client:
        _model(client, "probe")
        messages = set()
        for source in attempts:
            refused = _register(client, "probe", source)
            assert refused.status_code == 400, (source, refused.text)
            messages.add(refused.json()["message"])
        assert len(messages) == 1, messages  # says nothing about which files exist
        assert client.get(f"{UC}/models/main.default.probe/versions").json()["model_versions"] == []


def test_artifacts_are_copies_and_uploads_are_bounded(tmp_path: Path) -> None:
    root = tmp_path / "models"
    (root / "agent").mkdir(parents=True)
    (root / "agent" / "MLmodel").write_text("flavors: {}\n")
    (root / "agent" / "leak").symlink_to(tmp_path / "home" / "secret.key")
    (root / "plain.gguf").write_bytes(GGUF)
    settings = make_settings(
        tmp_path / "home",
        f"sqlite:///{tmp_path / 'm.db'}",
        model_source_roots=[root],
        staging_max_file_bytes=1024,
    )
    platform = Platform(settings)
    initialize(platform)
    try:
        with ServerThread(platform) as url:
            server = RunningServer(url=url, platform=platform)
            _, bob = create_user(server, "bob@example.com")
            with server.client(bob) as client:
                _model(client, "m")
                # A folder under a configured root that links outside it: refused.
                linked = _register(client, "m", str(root / "agent"))
                assert linked.status_code == 200
                assert linked.json()["status"] == "FAILED_REGISTRATION"
                assert "symbolic link" in linked.json()["status_message"]
                # A configured root works, and the artifact is a copy, not a link.
                plain = _register(client, "m", str(root / "plain.gguf"))
                assert plain.json()["status"] == "READY", plain.text
                stored = Path(plain.json()["storage_location"])
                assert os.stat(stored).st_ino != os.stat(root / "plain.gguf").st_ino
                (root / "plain.gguf").write_bytes(b"GGUF changed later")
                assert stored.read_bytes() == GGUF
                # BASTION_HOME is never a source, even under a configured root.
                assert _register(client, "m", str(settings.home / "secret.key")).status_code == 400
                # Uploads are bounded.
                too_big = client.put(f"{STAGING}/big.gguf", content=b"x" * 4096)
                assert too_big.status_code == 413, too_big.text
                assert client.get(STAGING).json()["files"] == []  # nothing half-written
    finally:
        platform.close()


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = start_stub("ok")
    yield server
    server.shutdown()
    server.server_close()


def test_a_stored_scan_cannot_make_the_server_read_a_file(
    server: RunningServer, stub: StubServer
) -> None:
    with server.admin() as admin:
        body = {"name": "target", "config": {"served_entities": [external_entity(stub)]}}
        assert admin.post("/api/2.0/serving-endpoints", json=body).status_code == 200
        acl = {"access_control_list": [{"group_name": "users", "permission_level": "CAN_QUERY"}]}
        admin.patch("/api/2.0/permissions/serving-endpoints/target", json=acl)
    _, mallory = create_user(server, "mallory@example.com")
    parameters = {
        "endpoint": "target",
        "risk_categories": ["violence"],
        "strategies": ["baseline"],
        "num_objectives": 1,
        "objectives_file": "/etc/passwd",
    }
    with server.client(mallory) as client:
        stored = client.put(
            "/api/2.0/redteam/scans/rt-evil",
            json={"status": "interrupted", "endpoint_name": "target", "parameters": parameters},
        )
        assert stored.status_code == 200, stored.text
        resumed = client.post("/api/2.0/redteam/scans/rt-evil/resume", json={})
        assert resumed.status_code == 400, resumed.text
        assert "root:" not in resumed.text
        started = client.post(
            "/api/2.0/redteam/scans", json={"endpoint": "target", "objectives_file": "/dev/zero"}
        )
        assert started.status_code == 400
