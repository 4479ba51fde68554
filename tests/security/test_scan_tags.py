"""Hole 7: red-team scan tags are accepted only from the scan that owns them, so nobody can
join forged rows into another user's scan results."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from bastion.query import QueryEngine
from conftest import RunningServer, create_user
from upstream_stub import StubServer, external_entity, start_stub

EP = "/api/2.0/serving-endpoints"


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = start_stub("A harmless reply.")
    yield server
    server.shutdown()
    server.server_close()


def _open_endpoint(server: RunningServer, stub: StubServer) -> None:
    with server.admin() as admin:
        body = {"name": "target", "config": {"served_entities": [external_entity(stub)]}}
        assert admin.post(EP, json=body).status_code == 200
        acl = {"access_control_list": [{"group_name": "users", "permission_level": "CAN_QUERY"}]}
        assert admin.patch("/api/2.0/permissions/serving-endpoints/target", json=acl).is_success


def _ask(server: RunningServer, token: str, **headers: str) -> int:
    client = openai.OpenAI(base_url=f"{server.url}/serving-endpoints", api_key=token, max_retries=0)
    try:
        client.chat.completions.create(
            model="target",
            messages=[{"role": "user", "content": "hello"}],
            extra_headers=headers or None,
        )
    except openai.APIStatusError as exc:
        return exc.status_code
    return 200


def test_forged_scan_tags_are_refused(server: RunningServer, stub: StubServer) -> None:
    _open_endpoint(server, stub)
    _, alice = create_user(server, "alice@example.com")
    _, mallory = create_user(server, "mallory@example.com")
    with server.client(alice) as client:
        minted = client.post(
            "/api/2.0/redteam/scans/rt-alice/credentials", json={"endpoint_name": "target"}
        )
        assert minted.status_code == 200, minted.text
        scan_token = minted.json()["token_value"]
    forged = {"X-Bastion-Scan-Type": "redteam", "X-Bastion-Scan-Id": "rt-alice"}
    assert _ask(server, mallory, **forged) == 403
    assert _ask(server, mallory, **{"X-Bastion-Scan-Id": "rt-alice"}) == 403
    assert _ask(server, mallory, **{"X-Bastion-Scan-Type": "redteam"}) == 403
    assert _ask(server, alice, **forged) == 403  # the user's own token is not the scan's
    with server.client(mallory) as client:  # nor can another user mint the scan's credential
        stolen = client.post(
            "/api/2.0/redteam/scans/rt-alice/credentials", json={"endpoint_name": "target"}
        )
        assert stolen.status_code == 403, stolen.text
    # The scan's credential tags its traffic, and only as its own scan.
    assert _ask(server, scan_token, **forged) == 200
    assert _ask(server, scan_token) == 200
    assert _ask(server, scan_token, **{"X-Bastion-Scan-Id": "rt-other"}) == 403
    assert _ask(server, mallory, **{"X-Bastion-Scan-Type": "eval"}) == 200  # own label

    server.platform.writer.flush()
    record = server.platform.identity.find("admin")
    assert record is not None
    admin = server.platform.identity_cache.caller(record.id)
    rows = (
        QueryEngine(server.platform)
        .execute(admin, "SELECT requester, scan_type, scan_id FROM main.default.target_payload")
        .rows
    )
    tagged = [r for r in rows if r["scan_id"] == "rt-alice"]
    assert len(tagged) == 2
    assert {r["requester"] for r in tagged} == {"alice@example.com"}
    assert {r["scan_type"] for r in tagged} == {"redteam"}
    assert [r["scan_type"] for r in rows if r["requester"] == "mallory@example.com"] == ["eval"]


def test_scan_credential_dies_with_the_credential_that_asked_for_it(
    server: RunningServer, stub: StubServer
) -> None:
    _open_endpoint(server, stub)
    _, alice = create_user(server, "alice@example.com")
    with server.client(alice) as client:
        scan_token = client.post(
            "/api/2.0/redteam/scans/rt-a2/credentials", json={"endpoint_name": "target"}
        ).json()["token_value"]
        me = client.get("/api/2.0/token/list").json()["token_infos"]
    assert _ask(server, scan_token) == 200
    parent = next(t for t in me if not t["comment"])
    with server.client(alice) as client:
        assert client.post(
            "/api/2.0/token/delete", json={"token_id": parent["token_id"]}
        ).is_success
    assert _ask(server, scan_token) == 401
