"""Hole 8: odd input — out-of-range numbers, non-ASCII digits, deep nesting — is a 400 in
the API's error shape, and the keep-alive connection survives it."""

from __future__ import annotations

import json
import socket
from typing import Any
from urllib.parse import urlsplit

import pytest

from conftest import ADMIN_TOKEN, RunningServer

HUGE = "9" * 30
UC = "/api/2.1/unity-catalog"


class KeepAlive:
    """One raw HTTP/1.1 connection, to prove that a bad request does not drop it."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = f"{parts.hostname}:{parts.port}"
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
        self.reader = self.sock.makefile("rb")

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body or b'')}\r\n\r\n"
        )
        self.sock.sendall(head.encode() + (body or b""))
        status = int(self.reader.readline().split()[1])
        length = 0
        while (line := self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
            assert name.lower() != "connection" or value.strip().lower() != "close", line
        data = self.reader.read(length)
        return status, json.loads(data) if data else None

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


ODD_REQUESTS: list[tuple[str, str, Any]] = [
    ("GET", f"/api/2.0/preview/scim/v2/Users/{HUGE}", None),
    ("GET", "/api/2.0/preview/scim/v2/Users/%C2%B2", None),  # ²
    ("GET", "/api/2.0/preview/scim/v2/Users/%D9%A3", None),  # Arabic-Indic three
    ("GET", f"/api/2.0/preview/scim/v2/Users?startIndex={HUGE}", None),
    ("GET", f"/api/2.0/bastion/audit?since_ms={HUGE}", None),
    ("GET", "/api/2.0/bastion/audit?since_ms=253402300800000", None),  # year 10000
    ("GET", f"{UC}/models/main.default.m/versions/{HUGE}", None),
    ("PUT", f"{UC}/models/main.default.m/aliases/champion", {"version_num": int(HUGE)}),
    ("POST", "/api/2.0/token/create", {"lifetime_seconds": int(HUGE)}),
    (
        "POST",
        f"{UC}/tables",
        {
            "name": "deep",
            "catalog_name": "main",
            "schema_name": "default",
            "columns": [{"name": "a", "type_text": "array<" * 200 + "int" + ">" * 200}],
        },
    ),
    (
        "POST",
        "/api/2.0/serving-endpoints",
        {
            "name": "odd",
            "config": {
                "served_entities": [{"entity_name": "main.default.m", "entity_version": HUGE}]
            },
        },
    ),
]


@pytest.mark.parametrize(("method", "path", "body"), ODD_REQUESTS)
def test_odd_input_is_a_400_on_a_live_connection(
    shared_server: RunningServer, method: str, path: str, body: Any
) -> None:
    conn = KeepAlive(shared_server.url)
    try:
        with shared_server.admin() as admin:
            admin.post(
                f"{UC}/models", json={"name": "m", "catalog_name": "main", "schema_name": "default"}
            )
        status, payload = conn.request(
            method, path, json.dumps(body).encode() if body is not None else None
        )
        assert status == 400, (status, payload)
        assert set(payload) >= {"error_code", "message"}
        again, me = conn.request("GET", "/api/2.0/preview/scim/v2/Me")  # same connection
        assert again == 200 and me["userName"] == "admin"
    finally:
        conn.close()


def test_deeply_nested_sql_and_json_are_refused(shared_server: RunningServer) -> None:
    conn = KeepAlive(shared_server.url)
    try:
        statement = {"statement": "SELECT " + "(" * 3000 + "1" + ")" * 3000, "wait_timeout": "10s"}
        status, payload = conn.request(
            "POST", "/api/2.0/sql/statements", json.dumps(statement).encode()
        )
        assert status == 200
        assert payload["status"]["state"] == "FAILED"
        assert payload["status"]["error"]["bastion_error_code"] == "INVALID_PARAMETER_VALUE"
        assert "nested" in payload["status"]["error"]["message"]
        status, payload = conn.request("POST", f"{UC}/catalogs", b"[" * 50_000 + b"]" * 50_000)
        assert status == 400 and "error_code" in payload
        again, _ = conn.request("GET", "/api/2.0/preview/scim/v2/Me")
        assert again == 200
    finally:
        conn.close()
