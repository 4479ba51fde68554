"""Deploying an app's source from a local folder, over the REST API: what ``bastion apps
deploy`` and a bundle's ``apps`` resource share.

The folder is packed as a ``.tar.gz`` of its regular files (caches, virtualenvs and links left
out), uploaded to the caller's own staging area, and deployed from there; the server unpacks it
into the deployment's snapshot.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from bastion.client.http import BastionClient

_SKIPPED = {"__pycache__", ".git", ".venv", "venv", "node_modules", ".mypy_cache", ".ruff_cache"}


def app_path(name: str, suffix: str = "") -> str:
    return f"/api/2.0/apps/{quote(name, safe='')}{suffix}"


def pack_folder(folder: Path, extra: dict[str, str] | None = None) -> bytes:
    """The folder as a .tar.gz of its regular files; ``extra`` adds (or replaces) files by
    relative name, e.g. an ``app.yaml`` written from a bundle's inline ``config``."""
    buffer = io.BytesIO()
    extra = extra or {}
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if any(part in _SKIPPED for part in relative.parts) or str(relative) in extra:
                continue
            if path.is_file() and not path.is_symlink():
                tar.add(path, arcname=str(relative), recursive=False)
        for name, text in sorted(extra.items()):
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def upload_source(
    client: BastionClient, name: str, folder: Path, extra: dict[str, str] | None = None
) -> tuple[str, int]:
    """Upload ``folder`` to the caller's staging area; the deployable source and its size."""
    data = pack_folder(folder, extra)
    digest = hashlib.sha256(data).hexdigest()[:16]
    staged = client.request(
        "PUT",
        f"/api/2.0/bastion/staging/files/apps/{quote(name, safe='')}/{digest}.tar.gz",
        params={"overwrite": "true"},
        content=data,
        headers={"content-type": "application/octet-stream"},
    )
    return str(staged["source"]), len(data)


def wait_for_deployment(
    client: BastionClient, name: str, deployment: dict[str, Any], timeout_s: float = 1800.0
) -> dict[str, Any]:
    """Poll a deployment until it is no longer ``IN_PROGRESS`` (installing a
    ``requirements.txt`` can take minutes); its last state."""
    deadline = time.monotonic() + timeout_s
    deployment_id = deployment["deployment_id"]
    while deployment["status"]["state"] == "IN_PROGRESS" and time.monotonic() < deadline:
        time.sleep(1)
        deployment = client.request("GET", app_path(name, f"/deployments/{deployment_id}"))
    return deployment


def wait_while_deploying(client: BastionClient, name: str, timeout_s: float = 120.0) -> Any:
    """The app once it has left ``DEPLOYING`` (or after ``timeout_s``)."""
    app = client.request("GET", app_path(name))
    deadline = time.monotonic() + timeout_s
    while app["app_status"]["state"] == "DEPLOYING" and time.monotonic() < deadline:
        time.sleep(1)
        app = client.request("GET", app_path(name))
    return app
