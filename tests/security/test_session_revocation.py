"""Hole 6: a password change, a disable or a revoked token ends what it granted — access
tokens, refresh tokens, and tokens created through them."""

from __future__ import annotations

from typing import Any

from conftest import RunningServer, create_user

ME = "/api/2.0/preview/scim/v2/Me"
USERS = "/api/2.0/preview/scim/v2/Users"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def _login(server: RunningServer, name: str, password: str) -> dict[str, Any]:
    with server.client() as anon:
        response = anon.post(
            "/oidc/v1/token",
            data={"grant_type": "password", "username": name, "password": password},
        )
    assert response.status_code == 200, response.text
    return dict(response.json())


def _me(server: RunningServer, token: str) -> int:
    with server.client(token) as client:
        return client.get(ME).status_code


def _refresh(server: RunningServer, refresh: str) -> int:
    with server.client() as anon:
        return anon.post(
            "/oidc/v1/token", data={"grant_type": "refresh_token", "refresh_token": refresh}
        ).status_code


def _patch_user(server: RunningServer, user_id: str, value: dict[str, Any]) -> None:
    with server.admin() as admin:
        response = admin.patch(
            f"{USERS}/{user_id}",
            json={"schemas": [PATCH], "Operations": [{"op": "replace", "value": value}]},
        )
        assert response.status_code == 200, response.text


def _create_pat(server: RunningServer, token: str) -> str:
    with server.client(token) as client:
        response = client.post("/api/2.0/token/create", json={"comment": "automation"})
        assert response.status_code == 200, response.text
        return str(response.json()["token_value"])


def test_password_change_ends_sessions_and_what_they_created(server: RunningServer) -> None:
    user_id, _ = create_user(server, "ana@example.com", password="first-password-1")
    session = _login(server, "ana@example.com", "first-password-1")
    minted = _create_pat(server, session["access_token"])  # an attacker's persistence
    assert _me(server, session["access_token"]) == 200 and _me(server, minted) == 200

    _patch_user(server, user_id, {"password": "second-password-2"})

    assert _me(server, session["access_token"]) == 401
    assert _refresh(server, session["refresh_token"]) == 400
    assert _me(server, minted) == 401
    fresh = _login(server, "ana@example.com", "second-password-2")
    assert _me(server, fresh["access_token"]) == 200


def test_disabling_a_user_ends_every_credential_for_good(server: RunningServer) -> None:
    user_id, pat = create_user(server, "ben@example.com", password="ben-password-1")
    session = _login(server, "ben@example.com", "ben-password-1")
    _patch_user(server, user_id, {"active": False})
    assert _me(server, pat) == 401 and _me(server, session["access_token"]) == 401
    _patch_user(server, user_id, {"active": True})  # re-enabling does not revive them
    assert _me(server, pat) == 401
    assert _me(server, session["access_token"]) == 401
    assert _refresh(server, session["refresh_token"]) == 400


def test_revoking_a_token_revokes_tokens_created_with_it(server: RunningServer) -> None:
    _, pat = create_user(server, "cy@example.com")
    child = _create_pat(server, pat)
    grandchild = _create_pat(server, child)
    with server.client(pat) as client:
        listed = client.get("/api/2.0/token/list").json()["token_infos"]
    parent_id = next(t["token_id"] for t in listed if t["comment"] != "automation")
    with server.client(pat) as client:
        assert client.post("/api/2.0/token/delete", json={"token_id": parent_id}).is_success
    assert _me(server, child) == 401 and _me(server, grandchild) == 401


def test_logout_and_refresh_reuse_end_the_session(server: RunningServer) -> None:
    create_user(server, "dee@example.com", password="dee-password-1")
    session = _login(server, "dee@example.com", "dee-password-1")
    with server.client() as anon:
        revoked = anon.post("/oidc/v1/revoke", data={"token": session["refresh_token"]})
    assert revoked.status_code == 200
    assert _me(server, session["access_token"]) == 401

    second = _login(server, "dee@example.com", "dee-password-1")
    with server.client() as anon:
        rotated = anon.post(
            "/oidc/v1/token",
            data={"grant_type": "refresh_token", "refresh_token": second["refresh_token"]},
        ).json()
    assert _me(server, rotated["access_token"]) == 200
    # The spent refresh token used again: a stolen copy. The whole session ends.
    assert _refresh(server, second["refresh_token"]) == 400
    assert _me(server, rotated["access_token"]) == 401
    assert _refresh(server, rotated["refresh_token"]) == 400
