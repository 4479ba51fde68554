"""The app proxy: sign-in, CAN_USE, identity headers nobody can forge, on-behalf-of-user
tokens (scopes, the user's own grants, audit), streaming both ways, WebSockets."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest
from apps_fixtures import (
    ECHO_APP,
    PASSWORD,
    app_server,
    browser_login,
    deploy,
    new_user,
    pack,
    upload,
    wait_for,
)
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from conftest import ADMIN_PASSWORD, RunningServer

__all__ = ["app_server"]  # a fixture

FORGED = {
    "X-Forwarded-Access-Token": "forged-token",
    "X-Forwarded-User": "admin",
    "X-Forwarded-Email": "admin@example.com",
    "X-Forwarded-Preferred-Username": "admin",
    "X-Forwarded-Host": "evil.example",
    "X-Real-Ip": "10.9.9.9",
    "X-Request-Id": "forged-id",
    "Forwarded": "for=10.9.9.9",
}


def _sql(token: str, server: RunningServer, statement: str) -> httpx.Response:
    return httpx.post(
        server.url + "/api/2.0/sql/statements",
        headers={"Authorization": f"Bearer {token}"},
        json={"statement": statement, "warehouse_id": "default", "wait_timeout": "30s"},
        timeout=60,
    )


@pytest.fixture(scope="module")
def echo(app_server: RunningServer) -> RunningServer:
    """The echo app with user_api_scopes ['sql'], usable by alice; bob may not use it."""
    new_user(app_server, "alice@example.com")
    new_user(app_server, "bob@example.com")
    with app_server.admin() as admin:
        created = admin.post("/api/2.0/apps", json={"name": "obo", "user_api_scopes": ["sql"]})
        assert created.status_code == 200, created.text
        acl = admin.patch(
            "/api/2.0/permissions/apps/obo",
            json={
                "access_control_list": [
                    {"user_name": "alice@example.com", "permission_level": "CAN_USE"}
                ]
            },
        )
        assert acl.status_code == 200
        deployment = deploy(admin, "obo", upload(admin, "apps/obo.tar.gz", pack(ECHO_APP)))
        assert deployment["status"]["state"] == "SUCCEEDED"
    return app_server


def _forwarded(response: httpx.Response) -> dict[str, list[str]]:
    assert response.status_code == 200, response.text
    return dict(response.json()["headers"])


def test_without_a_session_browsers_go_to_login_and_api_clients_get_401(
    echo: RunningServer,
) -> None:
    page = httpx.get(echo.url + "/apps/obo/headers?x=1", headers={"accept": "text/html"})
    assert page.status_code == 302
    assert page.headers["location"] == "/login?next=%2Fapps%2Fobo%2Fheaders%3Fx%3D1"
    api = httpx.get(echo.url + "/apps/obo/headers", headers={"accept": "application/json"})
    assert api.status_code == 401 and api.json()["error_code"] == "UNAUTHENTICATED"
    assert httpx.get(echo.url + "/apps/obo", headers={"accept": "text/html"}).status_code == 308
    assert httpx.get(echo.url + "/apps/nope/").status_code == 404


def test_login_is_csrf_safe_cookie_is_httponly_lax_and_next_stays_inside(
    echo: RunningServer,
) -> None:
    with httpx.Client(base_url=echo.url) as client:
        form = client.get("/login", params={"next": "//evil.example/x"})
        assert form.status_code == 200 and 'name=next value="/"' in form.text
        csrf = re.search(r'name=csrf value="([^"]+)"', form.text)
        assert csrf is not None
        data = {"username": "alice@example.com", "password": PASSWORD, "next": "/apps/obo/"}
        assert client.post("/login", data={**data, "csrf": "wrong"}).status_code == 403
        cross = client.post(
            "/login",
            data={**data, "csrf": csrf.group(1)},
            headers={"origin": "http://evil.example"},
        )
        assert cross.status_code == 403
        bad = client.post("/login", data={**data, "csrf": csrf.group(1), "password": "nope"})
        assert bad.status_code == 401 and "Invalid user name or password" in bad.text
        for target, expected in (("https://evil.example/", "/"), ("/apps/obo/", "/apps/obo/")):
            fresh = re.search(r'name=csrf value="([^"]+)"', client.get("/login").text)
            assert fresh is not None  # the token rotates at every sign-in
            done = client.post("/login", data={**data, "next": target, "csrf": fresh.group(1)})
            assert done.status_code == 303 and done.headers["location"] == expected
        cookie = next(c for c in done.headers.get_list("set-cookie") if "bastion_session=" in c)
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain HTTP here; behind TLS it is Secure


def test_the_app_sees_the_proxys_identity_never_the_clients(echo: RunningServer) -> None:
    alice = browser_login(echo.url, "alice@example.com", PASSWORD)
    alice.cookies.set("app_pref", "dark")
    headers = _forwarded(alice.get("/apps/obo/headers", headers=FORGED))
    assert headers["x-forwarded-user"] == ["alice@example.com"]
    assert headers["x-forwarded-email"] == ["alice@example.com"]
    assert headers["x-forwarded-preferred-username"] == ["alice@example.com"]
    assert headers["x-forwarded-host"] == [echo.url.removeprefix("http://")]
    assert headers["x-real-ip"] == ["127.0.0.1"]
    assert headers["x-request-id"] != ["forged-id"] and len(headers["x-request-id"]) == 1
    assert "forwarded" not in headers
    token = headers["x-forwarded-access-token"]
    assert token != ["forged-token"] and len(token) == 1
    # Bastion's own cookies never reach the app; the app's own do.
    assert headers["cookie"] == ["app_pref=dark"]
    # A PAT presented to the proxy is not passed on either.
    bearer = httpx.get(
        echo.url + "/apps/obo/headers", headers={"Authorization": f"Bearer {echo.admin_token}"}
    )
    assert "authorization" not in _forwarded(bearer)
    # Redirects and cookies from the app stay inside its folder.
    moved = alice.get("/apps/obo/redirect", follow_redirects=False)
    assert moved.headers["location"] == "/apps/obo/headers"
    assert "Path=/apps/obo/" in moved.headers["set-cookie"]
    assert "evil.example" not in moved.headers["set-cookie"]
    alice.close()


def test_users_without_can_use_get_a_clear_403(echo: RunningServer) -> None:
    bob = browser_login(echo.url, "bob@example.com", PASSWORD)
    page = bob.get("/apps/obo/headers")
    assert page.status_code == 403 and "CAN_USE" in page.text
    bob.close()


def test_the_forwarded_token_is_the_user_within_the_apps_scopes(echo: RunningServer) -> None:
    with echo.admin() as admin:
        assert (
            _sql(echo.admin_token, echo, "CREATE TABLE main.default.obo_t (id INT)").status_code
            == 200
        )
        assert (
            _sql(
                echo.admin_token, echo, "INSERT INTO main.default.obo_t VALUES (1), (2)"
            ).status_code
            == 200
        )
        # The app's own service principal may read the table; alice may not.
        sp = admin.get("/api/2.0/apps/obo").json()["service_principal_client_id"]
        granted = admin.patch(
            "/api/2.1/unity-catalog/permissions/table/main.default.obo_t",
            json={"changes": [{"principal": sp, "add": ["SELECT"]}]},
        )
        assert granted.status_code == 200
    alice = browser_login(echo.url, "alice@example.com", PASSWORD)
    token = _forwarded(alice.get("/apps/obo/headers"))["x-forwarded-access-token"][0]
    me = httpx.get(
        echo.url + "/api/2.0/preview/scim/v2/Me", headers={"Authorization": f"Bearer {token}"}
    )
    assert me.json()["userName"] == "alice@example.com"
    # Within its scopes: SQL runs — as alice, so never more than alice has.
    denied = _sql(token, echo, "SELECT * FROM main.default.obo_t")
    assert denied.status_code in (200, 403)
    state = denied.json().get("status", {}).get("state") if denied.status_code == 200 else None
    assert denied.status_code == 403 or state == "FAILED", denied.text
    assert "PERMISSION" in denied.text.upper() or "does not have" in denied.text
    # Outside its scopes: refused, although alice herself could.
    for method, path in (
        ("GET", "/api/2.0/serving-endpoints"),
        ("POST", "/api/2.0/token/create"),
        ("GET", "/api/2.0/apps"),
        ("GET", "/api/2.1/unity-catalog/catalogs"),
    ):
        refused = httpx.request(
            method, echo.url + path, json={}, headers={"Authorization": f"Bearer {token}"}
        )
        assert refused.status_code == 403, (path, refused.text)
    # A forwarded token cannot open apps through the proxy either.
    reused = httpx.get(echo.url + "/apps/obo/headers", headers={"Authorization": f"Bearer {token}"})
    assert reused.status_code == 401
    # Granted to alice: she reads it, and the audit row names her and the app.
    with echo.admin() as admin:
        admin.patch(
            "/api/2.1/unity-catalog/permissions/table/main.default.obo_t",
            json={
                "changes": [
                    {"principal": "alice@example.com", "add": ["SELECT"]},
                    {"principal": "users", "add": []},
                ]
            },
        )
    read = _sql(token, echo, "SELECT count(*) FROM main.default.obo_t")
    assert read.status_code == 200 and read.json()["status"]["state"] == "SUCCEEDED", read.text
    assert read.json()["result"]["data_array"] == [["2"]] or read.json()["result"][
        "data_array"
    ] == [[2]]
    echo.platform.audit.flush()
    rows = echo.platform.audit.query(user_email="alice@example.com", limit=500)
    via_app = [r for r in rows if r["request_params"].get("acting_app") == "obo"]
    assert via_app, rows[:3]
    assert all(r["identity_metadata"]["run_by"] == "app:obo" for r in via_app)
    assert all(r["identity_metadata"]["run_as"] == "alice@example.com" for r in via_app)
    alice.close()


def test_a_scope_change_applies_to_the_next_request_without_a_restart(echo: RunningServer) -> None:
    alice = browser_login(echo.url, "alice@example.com", PASSWORD)
    before = alice.get("/apps/obo/env").json()["pid"]
    old = _forwarded(alice.get("/apps/obo/headers"))["x-forwarded-access-token"][0]
    assert _sql(old, echo, "SELECT 1").status_code == 200
    with echo.admin() as admin:
        changed = admin.patch(
            "/api/2.0/apps/obo", json={"user_api_scopes": ["serving.serving-endpoints"]}
        )
        assert changed.status_code == 200
    try:
        # The token the app already holds lost 'sql' at once; the next one has the new scopes.
        assert _sql(old, echo, "SELECT 1").status_code == 403
        new = _forwarded(alice.get("/apps/obo/headers"))["x-forwarded-access-token"][0]
        listed = httpx.get(
            echo.url + "/api/2.0/serving-endpoints", headers={"Authorization": f"Bearer {new}"}
        )
        assert listed.status_code == 200
        assert _sql(new, echo, "SELECT 1").status_code == 403
        assert alice.get("/apps/obo/env").json()["pid"] == before
        # No scopes: no token at all.
        with echo.admin() as admin:
            admin.patch("/api/2.0/apps/obo", json={"user_api_scopes": []})
        assert "x-forwarded-access-token" not in _forwarded(alice.get("/apps/obo/headers"))
    finally:
        with echo.admin() as admin:
            admin.patch("/api/2.0/apps/obo", json={"user_api_scopes": ["sql"]})
    alice.close()


def test_logout_ends_the_session_and_every_token_forwarded_for_it(echo: RunningServer) -> None:
    alice = browser_login(echo.url, "alice@example.com", PASSWORD)
    token = _forwarded(alice.get("/apps/obo/headers"))["x-forwarded-access-token"][0]
    assert _sql(token, echo, "SELECT 1").status_code == 200
    form = alice.get("/logout")
    csrf = re.search(r'name=csrf value="([^"]+)"', form.text)
    assert csrf is not None
    assert alice.post("/logout", data={"csrf": "wrong"}).status_code == 403
    out = alice.post("/logout", data={"csrf": csrf.group(1)})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert _sql(token, echo, "SELECT 1").status_code == 401
    stale = httpx.get(
        echo.url + "/apps/obo/headers",
        cookies={"bastion_session": alice.cookies.get("bastion_session") or "x"},
        headers={"accept": "application/json"},
    )
    assert stale.status_code == 401
    alice.close()


def test_streams_pass_through_unbuffered_both_ways(echo: RunningServer) -> None:
    alice = browser_login(echo.url, "alice@example.com", PASSWORD)
    with alice.stream("GET", "/apps/obo/stream") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = response.iter_raw()
        first = next(chunks)
        assert b"data: first" in first
        # The app sends the rest only after this second request: a buffering proxy would hang.
        assert alice.get("/apps/obo/release").status_code == 200
        rest = b"".join(chunks)
    assert b"data: second" in rest and b"data: done" in rest

    def body() -> object:
        for _ in range(64):
            yield b"x" * 65536

    uploaded = alice.post("/apps/obo/upload", content=body())
    assert uploaded.json() == {"received": 64 * 65536}
    alice.close()


def test_websockets_carry_identity_and_check_the_origin(echo: RunningServer) -> None:
    alice = browser_login(echo.url, "alice@example.com", PASSWORD)
    cookie = f"bastion_session={alice.cookies.get('bastion_session')}"
    ws_url = echo.url.replace("http://", "ws://") + "/apps/obo/ws"

    async def talk(headers: dict[str, str]) -> tuple[dict[str, object], str, bytes]:
        async with connect(ws_url, additional_headers=headers, origin=None) as ws:  # type: ignore[arg-type]
            hello = json.loads(await ws.recv())
            await ws.send("hi")
            text = await ws.recv()
            await ws.send(b"abc")
            data = await ws.recv()
        return hello, str(text), bytes(data)  # type: ignore[arg-type]

    hello, text, data = asyncio.run(talk({"Cookie": cookie, "Origin": echo.url, **FORGED}))
    headers = dict(hello["headers"])  # type: ignore[arg-type]
    assert headers["x-forwarded-user"] == ["alice@example.com"]
    assert headers["x-forwarded-access-token"] != ["forged-token"]
    assert text == "echo:hi" and data == b"cba"
    for refused in (
        {"Cookie": cookie, "Origin": "http://evil.example"},
        {"Cookie": cookie},
        {"Origin": echo.url},
    ):
        with pytest.raises(InvalidStatus) as caught:
            asyncio.run(talk(refused))
        assert caught.value.response.status_code == 403
    alice.close()


def test_admin_signs_in_with_the_fixture_password(echo: RunningServer) -> None:
    admin = browser_login(echo.url, "admin", ADMIN_PASSWORD)
    assert _forwarded(admin.get("/apps/obo/headers"))["x-forwarded-user"] == ["admin"]
    admin.close()
    assert wait_for(lambda: True)
