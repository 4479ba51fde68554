"""The OAuth token endpoint with real HTTP: password, client_credentials, refresh, throttling."""

from __future__ import annotations

import base64

from conftest import ADMIN_PASSWORD, RunningServer

ME = "/api/2.0/preview/scim/v2/Me"


def test_password_grant_issues_a_working_jwt_and_rotating_refresh_token(
    server: RunningServer,
) -> None:
    with server.client() as anon:
        response = anon.post(
            "/oidc/v1/token",
            data={"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
        assert response.headers["cache-control"] == "no-store"
        with server.client(body["access_token"]) as me:
            assert me.get(ME).json()["userName"] == "admin"

        refreshed = anon.post(
            "/oidc/v1/token",
            data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
        )
        assert refreshed.status_code == 200
        assert refreshed.json()["refresh_token"] != body["refresh_token"]
        # A spent refresh token cannot be replayed.
        replay = anon.post(
            "/oidc/v1/token",
            data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
        )
        assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"


def test_scoped_token_is_limited_to_its_scopes(server: RunningServer) -> None:
    with server.client() as anon:
        body = anon.post(
            "/oidc/v1/token",
            data={
                "grant_type": "password",
                "username": "admin",
                "password": ADMIN_PASSWORD,
                "scope": "catalog.catalogs:read",
            },
        ).json()
    assert body["scope"] == "catalog.catalogs:read"
    with server.client(body["access_token"]) as scoped:
        assert scoped.get("/api/2.1/unity-catalog/catalogs").status_code == 200
        assert scoped.get(ME).status_code == 200  # always granted
        denied = scoped.post("/api/2.1/unity-catalog/catalogs", json={"name": "nope"})
        assert denied.status_code == 403
        assert "catalog.catalogs" in denied.json()["message"]


def test_client_credentials_for_a_service_principal(server: RunningServer) -> None:
    with server.admin() as admin:
        sp = admin.post(
            "/api/2.0/preview/scim/v2/ServicePrincipals", json={"displayName": "etl"}
        ).json()
        secret = admin.post(
            f"/api/2.0/accounts/servicePrincipals/{sp['id']}/credentials/secrets"
        ).json()["secret"]
    with server.client() as anon:
        form = {"grant_type": "client_credentials", "client_id": sp["applicationId"]}
        ok = anon.post("/oidc/v1/token", data={**form, "client_secret": secret})
        assert ok.status_code == 200 and "refresh_token" not in ok.json()
        basic = base64.b64encode(f"{sp['applicationId']}:{secret}".encode()).decode()
        ok2 = anon.post(
            "/oidc/v1/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
        )
        assert ok2.status_code == 200
        with server.client(ok.json()["access_token"]) as bot:
            assert bot.get(ME).json()["applicationId"] == sp["applicationId"]
        bad = anon.post("/oidc/v1/token", data={**form, "client_secret": "bsts_wrong"})
        assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"


def test_repeated_failures_lock_the_login_out(server: RunningServer) -> None:
    form = {"grant_type": "password", "username": "admin", "password": "wrong-password"}
    with server.client() as anon:
        statuses = [anon.post("/oidc/v1/token", data=form).status_code for _ in range(6)]
        assert statuses == [401, 401, 401, 401, 401, 429]
        right = {**form, "password": ADMIN_PASSWORD}
        locked = anon.post("/oidc/v1/token", data=right)
        assert locked.status_code == 429
        assert locked.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"


def test_bad_token_requests(server: RunningServer) -> None:
    with server.client() as anon:
        assert anon.post("/oidc/v1/token", json={"grant_type": "password"}).status_code == 400
        r = anon.post("/oidc/v1/token", data={"grant_type": "implicit"})
        assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
        r = anon.post("/oidc/v1/token", data={"grant_type": "password", "extra": "1"})
        assert r.status_code == 400
        r = anon.post("/oidc/v1/token", data={"grant_type": "password", "username": "admin"})
        assert r.status_code == 400
