"""Values compared in constant time (presigned chunk signatures, CSRF tokens) may arrive with
any characters: a non-ASCII one is a refusal, never a 500 (found by the REST fuzzer)."""

from __future__ import annotations

import time

import httpx

from conftest import RunningServer


def test_a_non_ascii_chunk_signature_is_refused(shared_server: RunningServer) -> None:
    with shared_server.admin() as admin:
        ran = admin.post(
            "/api/2.0/sql/statements",
            json={"statement": "SELECT 1 AS x", "disposition": "EXTERNAL_LINKS"},
        ).json()
    assert ran["status"]["state"] == "SUCCEEDED", ran
    with httpx.Client(base_url=shared_server.url, timeout=30) as http:
        reply = http.get(
            f"/api/2.0/sql/statements/{ran['statement_id']}/result/chunks/0/data",
            params={"expires": int(time.time()) + 60, "signature": "é" * 64},
        )
    assert reply.status_code == 403, reply.text
    assert reply.json()["error_code"] == "PERMISSION_DENIED"


def test_a_non_ascii_csrf_token_is_refused(shared_server: RunningServer) -> None:
    with httpx.Client(base_url=shared_server.url, timeout=30) as http:
        http.cookies.set("bastion_csrf", "ascii-cookie-value")
        reply = http.post(
            "/login",
            data={"username": "admin", "password": "x", "next": "/", "csrf": "ünïcode-too"},
            headers={"origin": shared_server.url, "accept": "text/html"},
        )
    assert reply.status_code == 403, reply.text
