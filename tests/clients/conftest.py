"""Fixtures of the real clients' tests, and the record of what each one showed.

Every test marked ``@pytest.mark.compat(client, operation)`` is one row of the compatibility
table in ``docs/clients.md``: the client's installed version and what the test found (works,
or — with ``unsupported=<why>`` — a clean "not supported"). ``test_zz_compatibility_doc.py``
checks the table against the doc; ``python scripts/clients_table.py`` rewrites it from the
results file the run leaves in ``build/clients-compat.json``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bastion.bootstrap import initialize
from bastion.platform import Platform
from conftest import RunningServer, ServerThread, create_user, make_settings
from upstream_stub import StubServer, external_entity, external_model, start_stub

ROOT = Path(__file__).resolve().parents[2]
NPM_TOOLS = ROOT / ".npm-tools"
#: The Node clients, pinned (``name@version`` a line): `.ci/run` installs the same file.
NPM_PACKAGES = dict(
    line.rsplit("@", 1)
    for line in (Path(__file__).parent / "npm-packages.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
)
RESULTS = ROOT / "build" / "clients-compat.json"
REPLY = "Bastion-stub says hello"
USER = "dev@example.com"
RESULTS_KEY = pytest.StashKey[list[dict[str, str]]]()


@dataclass(frozen=True)
class Deployment:
    server: RunningServer
    stub: StubServer
    token: str
    #: Endpoint served by the stub as an OpenAI-compatible provider.
    openai_endpoint: str = "assistant"
    #: Endpoint served by the stub as an Anthropic provider.
    anthropic_endpoint: str = "claude-stub"


def client_version(client: str) -> str:
    """The installed version of ``client`` (an npm CLI in .npm-tools, or a Python package)."""
    package = {"claude-code": "@anthropic-ai/claude-code", "codex": "@openai/codex"}.get(client)
    if package is not None:
        manifest = NPM_TOOLS / "node_modules" / package / "package.json"
        if manifest.exists():
            return str(json.loads(manifest.read_text())["version"])
        return NPM_PACKAGES[package]
    return importlib.metadata.version(client)


def npm_bin(name: str) -> Path:
    """An npm CLI from .npm-tools, installed (pinned) on first use; skips without npm."""
    path = NPM_TOOLS / "node_modules" / ".bin" / name
    if path.exists():
        return path
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed, so the Node clients (Claude Code, Codex) cannot be")
    specs = [f"{name}@{version}" for name, version in NPM_PACKAGES.items()]
    NPM_TOOLS.mkdir(exist_ok=True)
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--prefix", str(NPM_TOOLS), *specs],
        check=True,
        capture_output=True,
        timeout=900,
    )
    if not path.exists():
        pytest.fail(f"npm installed {specs} but {path} is missing")
    return path


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """A clean environment for a CLI: its own HOME, no credentials of the machine, and a
    proxy that goes nowhere for anything but loopback, so nothing leaves the machine."""
    home.mkdir(parents=True, exist_ok=True)
    keep = ("PATH", "LANG", "LC_ALL", "TERM", "TMPDIR", "SSL_CERT_FILE")
    env = {k: v for k, v in os.environ.items() if k in keep}
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens, connections fail at once
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        HTTP_PROXY=closed,
        HTTPS_PROXY=closed,
        http_proxy=closed,
        https_proxy=closed,
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        **extra,
    )
    return env


@pytest.fixture(scope="package")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A real server; a deterministic upstream serving two endpoints (OpenAI-compatible and
    Anthropic); an ordinary user who may query both."""
    home = tmp_path_factory.mktemp("clients")
    settings = make_settings(
        home / "home",
        f"sqlite:///{home / 'metastore.db'}",
        sql_external_chunk_bytes=16 * 1024,  # several chunks for the connector to fetch
    )
    platform = Platform(settings)
    initialize(platform)
    stub = start_stub(REPLY)
    try:
        with ServerThread(platform) as url:
            server = RunningServer(url=url, platform=platform)
            _, token = create_user(server, USER)
            deployment = Deployment(server, stub, token)
            with server.admin() as admin:
                for name, entity in (
                    (deployment.openai_endpoint, external_entity(stub)),
                    (
                        deployment.anthropic_endpoint,
                        {"name": "claude", "external_model": external_model(stub, anthropic=True)},
                    ),
                ):
                    created = admin.post(
                        "/api/2.0/serving-endpoints",
                        json={"name": name, "config": {"served_entities": [entity]}},
                    )
                    assert created.status_code == 200, created.text
                    acl = {
                        "access_control_list": [
                            {"user_name": USER, "permission_level": "CAN_QUERY"}
                        ]
                    }
                    granted = admin.patch(
                        f"/api/2.0/permissions/serving-endpoints/{name}", json=acl
                    )
                    assert granted.status_code == 200, granted.text
            yield deployment
    finally:
        stub.shutdown()
        stub.server_close()
        platform.close()


def payload_rows(server: RunningServer, endpoint: str) -> list[dict[str, Any]]:
    """The endpoint's payload rows, read as admin with governed SQL."""
    server.platform.writer.flush()
    table = endpoint.replace("-", "_") + "_payload"
    with server.admin() as admin:
        reply = admin.post(
            "/api/2.0/sql/statements",
            json={
                "statement": "SELECT request, response, requester, status_code, api, stream, "
                f"logging_error_codes FROM main.default.{table} ORDER BY request_time",
                "wait_timeout": "30s",
            },
        ).json()
    assert reply["status"]["state"] == "SUCCEEDED", reply
    names = [c["name"] for c in reply["manifest"]["schema"]["columns"]]
    return [dict(zip(names, row, strict=True)) for row in reply["result"].get("data_array", [])]


# -- the compatibility record -------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RESULTS_KEY] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("compat")
    if marker is None or (report.when != "call" and not report.skipped and not report.failed):
        return
    if report.when == "teardown" and not report.failed:
        return
    client, operation = marker.args
    unsupported = marker.kwargs.get("unsupported")
    if report.passed:
        result = "not supported" if unsupported else "works"
    elif report.skipped:
        result = "skipped"
    else:
        result = "fails"
    item.config.stash[RESULTS_KEY].append(
        {
            "client": client,
            "version": client_version(client),
            "operation": operation,
            "result": result,
            "why": unsupported or "",
            "test": item.nodeid,
        }
    )
