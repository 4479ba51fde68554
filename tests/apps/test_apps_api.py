"""Apps REST API, service principals, resources → grants, deployments and supervised
processes, against a real server over HTTP with the echo app as a real subprocess."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
from apps_fixtures import (
    ECHO_APP,
    PASSWORD,
    app_server,
    app_state,
    browser_login,
    deploy,
    new_user,
    pack,
    upload,
    wait_for,
)

from conftest import RunningServer

__all__ = ["app_server"]  # a fixture


def _sql(client: httpx.Client, statement: str) -> httpx.Response:
    return client.post(
        "/api/2.0/sql/statements",
        json={"statement": statement, "warehouse_id": "default", "wait_timeout": "30s"},
    )


def test_create_get_list_update_delete_with_its_own_service_principal(
    app_server: RunningServer,
) -> None:
    token = new_user(app_server, "owner1@example.com")
    with app_server.client(token) as owner, app_server.admin() as admin:
        created = owner.post(
            "/api/2.0/apps",
            json={"name": "crud-app", "description": "d", "user_api_scopes": ["sql"]},
        )
        assert created.status_code == 200, created.text
        body = created.json()
        assert body["app_status"]["state"] == "UNAVAILABLE"
        assert body["compute_status"]["state"] == "STOPPED"
        assert body["user_api_scopes"] == ["sql"]
        assert set(body["effective_user_api_scopes"]) == {
            "sql",
            "iam.current-user:read",
            "iam.access-control:read",
        }
        client_id = body["service_principal_client_id"]
        sps = admin.get("/api/2.0/preview/scim/v2/ServicePrincipals").json()["Resources"]
        assert any(sp["applicationId"] == client_id for sp in sps)

        assert owner.post("/api/2.0/apps", json={"name": "crud-app"}).status_code == 409
        assert owner.post("/api/2.0/apps", json={"name": "Bad_Name"}).status_code == 400
        bad_scope = owner.post(
            "/api/2.0/apps", json={"name": "x-app", "user_api_scopes": ["iam.tokens"]}
        )
        assert bad_scope.status_code == 400

        other = new_user(app_server, "other1@example.com")
        with app_server.client(other) as stranger:
            assert stranger.get("/api/2.0/apps/crud-app").status_code == 403
            assert "crud-app" not in [
                a["name"] for a in stranger.get("/api/2.0/apps").json()["apps"]
            ]
            acl = owner.patch(
                "/api/2.0/permissions/apps/crud-app",
                json={
                    "access_control_list": [
                        {"user_name": "other1@example.com", "permission_level": "CAN_USE"}
                    ]
                },
            )
            assert acl.status_code == 200, acl.text
            seen = stranger.get("/api/2.0/apps/crud-app")
            assert seen.status_code == 200 and seen.json()["permission_level"] == "CAN_USE"
            # CAN_USE does not manage: no changes, no deploys, no logs.
            assert (
                stranger.patch("/api/2.0/apps/crud-app", json={"description": "x"}).status_code
                == 403
            )
            assert stranger.get("/api/2.0/apps/crud-app/logs").status_code == 403
            assert stranger.delete("/api/2.0/apps/crud-app").status_code == 403

        patched = owner.patch(
            "/api/2.0/apps/crud-app", json={"user_api_scopes": ["sql", "redteam"]}
        )
        assert patched.status_code == 200 and patched.json()["user_api_scopes"] == [
            "sql",
            "redteam",
        ]

        assert owner.delete("/api/2.0/apps/crud-app").status_code == 200
        assert owner.get("/api/2.0/apps/crud-app").status_code == 404
        sps = admin.get("/api/2.0/preview/scim/v2/ServicePrincipals").json().get("Resources", [])
        assert not any(sp["applicationId"] == client_id for sp in sps)


def test_declaring_a_resource_grants_it_to_the_app_and_needs_the_right_to_grant(
    app_server: RunningServer,
) -> None:
    token = new_user(app_server, "owner2@example.com")
    with app_server.admin() as admin, app_server.client(token) as user:
        assert _sql(admin, "CREATE TABLE main.default.app_res (id INT)").status_code == 200
        resource = {
            "name": "orders",
            "uc_securable": {
                "securable_full_name": "main.default.app_res",
                "securable_type": "TABLE",
                "permission": "SELECT",
            },
        }
        refused = user.post("/api/2.0/apps", json={"name": "res-user", "resources": [resource]})
        assert refused.status_code == 403, refused.text
        created = admin.post("/api/2.0/apps", json={"name": "res-app", "resources": [resource]})
        assert created.status_code == 200, created.text
        client_id = created.json()["service_principal_client_id"]
        grants = admin.get("/api/2.1/unity-catalog/permissions/table/main.default.app_res").json()
        assert {"principal": client_id, "privileges": ["SELECT"]} in grants["privilege_assignments"]
        # Dropping the resource revokes the grant.
        assert admin.patch("/api/2.0/apps/res-app", json={"resources": []}).status_code == 200
        grants = admin.get("/api/2.1/unity-catalog/permissions/table/main.default.app_res").json()
        assert all(g["principal"] != client_id for g in grants["privilege_assignments"])
        assert admin.delete("/api/2.0/apps/res-app").status_code == 200


def test_deploy_runs_the_app_with_its_identity_secrets_and_a_clean_environment(
    app_server: RunningServer,
) -> None:
    os.environ["BASTION_TEST_LEAK"] = "the server's environment must not reach apps"
    with app_server.admin() as admin:
        assert (
            admin.post("/api/2.0/secrets/scopes/create", json={"scope": "app-scope"}).status_code
            == 200
        )
        put = admin.post(
            "/api/2.0/secrets/put",
            json={"scope": "app-scope", "key": "k", "string_value": "s3cr3t"},
        )
        assert put.status_code == 200, put.text
        created = admin.post(
            "/api/2.0/apps",
            json={
                "name": "echo",
                "user_api_scopes": ["sql"],
                "resources": [{"name": "key", "secret": {"scope": "app-scope", "key": "k"}}],
            },
        )
        assert created.status_code == 200, created.text
        yaml = (ECHO_APP / "app.yaml").read_text() + "  - name: MY_SECRET\n    valueFrom: key\n"
        source = upload(admin, "apps/echo.tar.gz", pack(ECHO_APP, **{"app.yaml": yaml}))
        deployment = deploy(admin, "echo", source)
        assert deployment["status"]["state"] == "SUCCEEDED", deployment
        info = admin.get("/api/2.0/apps/echo").json()
        assert info["app_status"]["state"] == "RUNNING"
        assert info["compute_status"]["state"] == "ACTIVE"
        assert info["active_deployment_id"] == deployment["deployment_id"]

        browser = browser_login(app_server.url, "admin", "admin-password-for-tests")
        env = browser.get("/apps/echo/env").json()
        assert env["MY_SECRET"] == "s3cr3t" and env["GREETING"] == "hello"
        assert env["BASTION_APP_NAME"] == "echo"
        assert env["BASTION_HOST"] == app_server.url
        assert env["BASTION_CLIENT_ID"] == info["service_principal_client_id"]
        assert env["has_client_secret"] and env["leaked"] == []
        assert Path(env["cwd"]).is_relative_to(app_server.platform.settings.home / "apps" / "echo")

        logs = admin.get("/api/2.0/apps/echo/logs", params={"offset": 0}).json()
        assert "starting on port" in logs["content"] and "s3cr3t" not in logs["content"]

        status = admin.get("/api/2.0/bastion/status").json()
        listed = [p for p in status["processes"] if p["kind"] == "app" and p["key"] == "echo"]
        assert listed and listed[0]["state"] == "RUNNING" and listed[0]["pid"]

        # A source outside the caller's staging area is refused, whatever it names.
        for path in ("/etc", str(ECHO_APP), "staging:../../etc", "staging:missing.tar.gz"):
            bad = admin.post("/api/2.0/apps/echo/deployments", json={"source_code_path": path})
            assert bad.status_code == 400, (path, bad.text)
        browser.close()


def test_killed_app_answers_a_clear_page_and_is_restarted(app_server: RunningServer) -> None:
    with app_server.admin() as admin:
        if admin.get("/api/2.0/apps/echo").status_code == 404:
            admin.post("/api/2.0/apps", json={"name": "echo", "user_api_scopes": ["sql"]})
            deploy(admin, "echo", upload(admin, "apps/echo.tar.gz", pack(ECHO_APP)))
        browser = browser_login(app_server.url, "admin", "admin-password-for-tests")
        first = browser.get("/apps/echo/env").json()["pid"]
        os.kill(first, signal.SIGKILL)
        # Until it is back, the proxy answers 502/503 with a page (never a stack trace).
        page = wait_for(
            lambda: (r := browser.get("/apps/echo/env")).status_code in (502, 503) and r,
            30,
            "the proxy to notice the death",
        )
        assert "text/html" in page.headers["content-type"] and "Traceback" not in page.text
        assert "App" in page.text
        api = httpx.get(
            app_server.url + "/apps/echo/env",
            cookies=browser.cookies,
            headers={"accept": "application/json"},
        )
        assert api.status_code in (200, 502, 503)
        again = wait_for(
            lambda: (r := browser.get("/apps/echo/env")).status_code == 200 and r, 60, "a restart"
        )
        assert again.json()["pid"] != first
        assert app_state(admin, "echo") == "RUNNING"
        processes = admin.get("/api/2.0/bastion/status").json()["processes"]
        echo = [p for p in processes if p["kind"] == "app" and p["key"] == "echo"]
        assert echo and echo[0]["restarts"] >= 1

        # Stopped: 503 and a page saying so; started again: back.
        assert admin.post("/api/2.0/apps/echo/stop").status_code == 200
        stopped = browser.get("/apps/echo/env")
        assert stopped.status_code == 503 and "stopped" in stopped.text
        assert admin.post("/api/2.0/apps/echo/start").status_code == 200
        wait_for(lambda: browser.get("/apps/echo/env").status_code == 200, 60, "the start")
        browser.close()


def test_requirements_are_installed_into_a_per_app_virtualenv(
    app_server: RunningServer, tmp_path: Path
) -> None:
    wheel = _tiny_wheel(tmp_path)
    app_dir = tmp_path / "reqapp"
    app_dir.mkdir()
    (app_dir / "wheels").mkdir()
    (app_dir / "wheels" / wheel.name).write_bytes(wheel.read_bytes())
    (app_dir / "requirements.txt").write_text(f"./wheels/{wheel.name}\n")
    (app_dir / "main.py").write_text(
        "import http.server, os, tinydep\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        body = tinydep.VALUE.encode()\n"
        "        self.send_response(200); self.send_header('content-length', str(len(body)))\n"
        "        self.end_headers(); self.wfile.write(body)\n"
        "port = int(os.environ['BASTION_APP_PORT'])\n"
        "http.server.HTTPServer(('127.0.0.1', port), H).serve_forever()\n"
    )
    with app_server.admin() as admin:
        assert admin.post("/api/2.0/apps", json={"name": "req-app"}).status_code == 200
        deployment = deploy(admin, "req-app", upload(admin, "apps/req.tar.gz", pack(app_dir)))
        assert deployment["status"]["state"] == "SUCCEEDED", admin.get(
            "/api/2.0/apps/req-app/logs"
        ).json()["content"]
        browser = browser_login(app_server.url, "admin", "admin-password-for-tests")
        assert browser.get("/apps/req-app/").text == "from the app's own virtualenv"
        venvs = app_server.platform.settings.home / "apps" / "req-app" / "venvs"
        assert any(venvs.iterdir())
        # A broken requirements file fails the deployment, and the running version stays.
        (app_dir / "requirements.txt").write_text("./wheels/missing-0.1-py3-none-any.whl\n")
        failed = deploy(admin, "req-app", upload(admin, "apps/req2.tar.gz", pack(app_dir)))
        assert failed["status"]["state"] == "FAILED"
        assert browser.get("/apps/req-app/").text == "from the app's own virtualenv"
        assert admin.delete("/api/2.0/apps/req-app").status_code == 200
        browser.close()


def _tiny_wheel(folder: Path) -> Path:
    import zipfile

    path = folder / "tinydep-0.1-py3-none-any.whl"
    files = {
        "tinydep.py": 'VALUE = "from the app\'s own virtualenv"\n',
        "tinydep-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinydep\nVersion: 0.1\n",
        "tinydep-0.1.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    files["tinydep-0.1.dist-info/RECORD"] = (
        "".join(f"{n},,\n" for n in files) + "tinydep-0.1.dist-info/RECORD,,\n"
    )
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
    return path


def test_a_user_signs_in_with_the_password_used_by_the_fixtures(app_server: RunningServer) -> None:
    new_user(app_server, "signin@example.com")
    client = browser_login(app_server.url, "signin@example.com", PASSWORD)
    assert "bastion_session" in client.cookies
    client.close()
