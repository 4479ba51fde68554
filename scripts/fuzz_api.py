"""Fuzz the REST API from its OpenAPI document with Schemathesis, as an admin and as an
ordinary user, against a real server; fail on any 5xx or unhandled server error.

    python scripts/fuzz_api.py                 # the large run (minutes)
    python scripts/fuzz_api.py --size small    # what CI runs (tests/server/test_fuzz_api.py)

Starts ``bastion up`` on a free loopback port with a throw-away home, seeds a few objects so
that the fuzzer reaches more than 404s, runs ``schemathesis run`` (checks:
``not_a_server_error``) once per token, and prints one table: generated cases, failures,
seconds, and the unhandled errors the server logged. Exit status 0 only if all are zero.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ADMIN_TOKEN = "bstp_" + "f" * 40
SIZES: dict[str, tuple[int, str, int | None]] = {
    # (max examples per operation, phases, time budget per run: fuzzing repeats until it is
    # spent; None: one pass)
    "small": (8, "fuzzing", None),
    "large": (100, "examples,coverage,fuzzing,stateful", 900),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the server exited during start-up")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("the server did not start")


def _seed(url: str) -> str:
    """Objects the fuzzer can find, and an ordinary user's token."""
    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with admin:
        user = admin.post("/api/2.0/preview/scim/v2/Users", json={"userName": "fuzz@example.com"})
        user.raise_for_status()
        admin.post("/api/2.1/unity-catalog/catalogs", json={"name": "fz"})
        admin.post("/api/2.1/unity-catalog/schemas", json={"name": "s", "catalog_name": "fz"})
        admin.post(
            "/api/2.0/sql/statements",
            json={"statement": "CREATE TABLE main.default.fz_t (a INT, b STRING)"},
        )
        admin.post(
            "/api/2.1/unity-catalog/models",
            json={"name": "fz_m", "catalog_name": "main", "schema_name": "default"},
        )
        admin.post("/api/2.0/secrets/scopes/create", json={"scope": "fz"})
        grant = {"changes": [{"principal": "fuzz@example.com", "add": ["SELECT"]}]}
        admin.patch("/api/2.1/unity-catalog/permissions/table/main.default.fz_t", json=grant)
    return _user_token(url, user.json()["id"])


def _user_token(url: str, user_id: str) -> str:
    """Give the fuzz user a password, log in, and mint a PAT with the session."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    patch = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"password": "fuzz-password-1"}}],
    }
    httpx.patch(
        f"{url}/api/2.0/preview/scim/v2/Users/{user_id}", json=patch, headers=headers
    ).raise_for_status()
    login = httpx.post(
        f"{url}/oidc/v1/token",
        data={
            "grant_type": "password",
            "username": "fuzz@example.com",
            "password": "fuzz-password-1",
        },
    )
    login.raise_for_status()
    pat = httpx.post(
        f"{url}/api/2.0/token/create",
        json={"comment": "fuzz"},
        headers={"Authorization": f"Bearer {login.json()['access_token']}"},
    )
    pat.raise_for_status()
    return str(pat.json()["token_value"])


def _fuzz(url: str, token: str, size: str, seed: int) -> tuple[int, int, float, str]:
    examples, phases, budget = SIZES[size]
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{url}/api/openapi.json",
        "--checks",
        "not_a_server_error",
        "--header",
        f"Authorization: Bearer {token}",
        "--max-examples",
        str(examples),
        "--phases",
        phases,
        "--workers",
        "1",
        "--seed",
        str(seed),
        *(["--max-time", str(budget)] if budget else []),
        "--suppress-health-check",
        "all",
        "--no-color",
    ]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=(budget or 0) + 900)
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    generated = re.search(r"(\d+) generated", output)
    failures = re.search(r"(\d+) found (\d+) unique failure", output)
    failed = int(failures.group(2)) if failures else (0 if done.returncode == 0 else 1)
    return int(generated.group(1)) if generated else 0, failed, elapsed, output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="large")
    parser.add_argument("--seed", type=int, default=20261206)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bastion-fuzz-"))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (home / "server.log").open("wb")
    env = {
        **os.environ,
        "BASTION_HOME": str(home / "home"),
        "BASTION_ADMIN_TOKEN": ADMIN_TOKEN,
        "BASTION_ADMIN_PASSWORD": "fuzz-admin-password",
    }
    env.pop("BASTION_DATABASE_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "bastion.cli.main", "up", "--port", str(port), "--no-default-model"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    rows = []
    try:
        _wait(url, server)
        user_token = _seed(url)
        for who, token in (("admin", ADMIN_TOKEN), ("ordinary user", user_token)):
            generated, failed, elapsed, output = _fuzz(url, token, args.size, args.seed)
            rows.append((who, generated, failed, elapsed))
            if failed:
                print(output[-6000:], file=sys.stderr)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    logged = (home / "server.log").read_text(errors="replace")
    unhandled = logged.count("unhandled error") + logged.count("Exception in ASGI application")
    print(f"Schemathesis fuzz of the REST API ({args.size}, seed {args.seed}), checks: 5xx")
    print(f"{'token':<15} {'cases':>8} {'failures':>9} {'seconds':>8}")
    for who, generated, failed, elapsed in rows:
        print(f"{who:<15} {generated:>8} {failed:>9} {elapsed:>8.1f}")
    print(f"unhandled server errors logged: {unhandled}")
    if unhandled:
        print(logged[-6000:], file=sys.stderr)
    shutil.rmtree(home, ignore_errors=True)
    ok = all(failed == 0 and generated > 0 for _, generated, failed, _ in rows)
    return 0 if ok and unhandled == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
