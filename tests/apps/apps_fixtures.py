"""Fixtures for apps: a real server on a known port (apps call it back at BASTION_HOST),
users, a browser-style sign-in, and the echo test app packed as the CLI packs a folder."""

from __future__ import annotations

import io
import re
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.bootstrap import initialize
from bastion.platform import Platform
from conftest import (
    BACKENDS,
    POSTGRES_URL,
    RunningServer,
    ServerThread,
    _postgres_database,
    create_user,
    free_port,
    make_settings,
)

ECHO_APP = Path(__file__).parent / "echo_app"
PASSWORD = "a-long-user-password"


@pytest.fixture(scope="module", params=BACKENDS)
def app_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """One server for a module, on the port its settings name (apps call back there)."""
    home = tmp_path_factory.mktemp("apps")
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{home / 'metastore.db'}"])
    else:
        if not POSTGRES_URL:
            pytest.skip("BASTION_TEST_POSTGRES_URL is not set")
        urls = _postgres_database()
    port = free_port()
    services = Platform(make_settings(home / "home", next(urls), port=port, dashboard=False))
    initialize(services)
    try:
        with ServerThread(services, port=port) as base:
            yield RunningServer(url=base, platform=services)
    finally:
        services.close()
        for _ in urls:
            pass


def pack(folder: Path, **extra_files: str) -> bytes:
    """A .tar.gz of ``folder`` (plus ``extra_files``), as ``bastion apps deploy`` uploads."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                tar.add(path, arcname=str(path.relative_to(folder)))
        for name, text in extra_files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def upload(client: httpx.Client, path: str, data: bytes) -> str:
    response = client.put(
        f"/api/2.0/bastion/staging/files/{path}", content=data, params={"overwrite": "true"}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["source"])


def wait_for(check: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy (never asserts on time)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def app_state(client: httpx.Client, name: str) -> str:
    return str(client.get(f"/api/2.0/apps/{name}").json()["app_status"]["state"])


def deploy(client: httpx.Client, name: str, source: str, wait: bool = True) -> dict[str, Any]:
    response = client.post(f"/api/2.0/apps/{name}/deployments", json={"source_code_path": source})
    assert response.status_code == 200, response.text
    deployment = response.json()
    if wait:
        deployment_id = deployment["deployment_id"]

        def finished() -> dict[str, Any] | None:
            body = client.get(f"/api/2.0/apps/{name}/deployments/{deployment_id}").json()
            return body if body["status"]["state"] != "IN_PROGRESS" else None

        deployment = wait_for(finished, 300, "the deployment")
        if deployment["status"]["state"] == "SUCCEEDED":
            wait_for(lambda: app_state(client, name) == "RUNNING", 60, f"{name} to run")
    return deployment


def browser_login(base_url: str, user: str, password: str) -> httpx.Client:
    """A client that signed in through the login form, holding the session cookie."""
    client = httpx.Client(base_url=base_url, timeout=30, headers={"accept": "text/html"})
    form = client.get("/login", params={"next": "/"})
    csrf = re.search(r'name=csrf value="([^"]+)"', form.text)
    assert csrf is not None, form.text
    response = client.post(
        "/login",
        data={"username": user, "password": password, "next": "/", "csrf": csrf.group(1)},
    )
    assert response.status_code == 303, response.text
    return client


def new_user(server: RunningServer, name: str) -> str:
    """A user with a password (and a PAT, returned)."""
    _, token = create_user(server, name, PASSWORD)
    return token
