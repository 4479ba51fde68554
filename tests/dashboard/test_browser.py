"""Acceptance, in a real browser: two users sign in through /login and open the dashboard,
which reads with each one's forwarded token — so each sees exactly their own grants."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode

import httpx
import pytest
from browser import chromium, sign_in
from payload_data import create_payload_table, sql
from playwright.sync_api import expect

from bastion.bootstrap import initialize
from bastion.platform import Platform
from bastion.server.run import deploy_dashboard
from conftest import ServerThread, create_user, free_port, make_settings

PASSWORD = "a-long-user-password"
NOW = datetime.now(UTC).replace(microsecond=0)
START, END = NOW - timedelta(hours=24), NOW + timedelta(minutes=1)
WINDOW = {"start": START.isoformat(), "end": END.isoformat()}


class Env:
    def __init__(self, url: str, alice: str, bob: str) -> None:
        self.url, self.alice, self.bob = url, alice, bob


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("dash")
    port = free_port()
    platform = Platform(
        make_settings(home / "home", f"sqlite:///{home / 'm.db'}", port=port, dashboard=True)
    )
    initialize(platform)
    deploy_dashboard(platform)
    try:
        with ServerThread(platform, port=port) as url:
            _, alice = create_user_with_password(url, platform, "alice@example.com")
            _, bob = create_user_with_password(url, platform, "bob@example.com")
            admin = httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60
            )
            create_payload_table(admin, "main.default.kyoto_payload", "kyoto", 120, NOW)
            create_payload_table(admin, "main.default.other_payload", "other", 30, NOW)
            for statement in (
                "GRANT SELECT ON TABLE main.default.kyoto_payload TO `alice@example.com`",
                "CREATE FUNCTION main.default.no_redteam(scan STRING) RETURN "
                "is_account_group_member('admins') OR scan <> 'redteam'",
                "ALTER TABLE main.default.kyoto_payload SET ROW FILTER main.default.no_redteam "
                "ON (scan_type)",
                "CREATE FUNCTION main.default.mask_user(who STRING) RETURN CASE WHEN "
                "is_account_group_member('admins') THEN who ELSE concat(substring(who, 1, 2), "
                "'***') END",
                "ALTER TABLE main.default.kyoto_payload ALTER COLUMN requester SET MASK "
                "main.default.mask_user",
            ):
                sql(admin, statement)
            yield Env(url, alice, bob)
    finally:
        platform.close()


ADMIN = "bstp_" + "a" * 40


def create_user_with_password(url: str, platform: Platform, name: str) -> tuple[str, str]:
    class _Server:
        def __init__(self) -> None:
            self.url, self.platform, self.admin_token = url, platform, ADMIN

        def admin(self) -> httpx.Client:
            return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"})

    return create_user(_Server(), name, PASSWORD)  # type: ignore[arg-type]


def _statement(url: str, token: str, text: str) -> list[list[object]]:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
        body = sql(client, text)
    return body["result"]["data_array"]


def _ops_url(env: Env, **params: str) -> str:
    return "/apps/dashboard/?" + urlencode({**WINDOW, **params})


def _metric(page, label: str) -> str:  # type: ignore[no-untyped-def]
    metric = page.locator('[data-testid="stMetric"]', has_text=label).first
    metric.wait_for(timeout=60_000)
    return metric.locator('[data-testid="stMetricValue"]').inner_text().strip()


def test_each_user_sees_their_own_grants_masks_and_filters_included(env: Env) -> None:
    stamp = "%Y-%m-%d %H:%M:%S"
    window = (
        f"request_time >= TIMESTAMP '{START:{stamp}}' AND request_time < TIMESTAMP '{END:{stamp}}'"
    )
    expected = _statement(
        env.url, env.alice, f"SELECT count(*) FROM main.default.kyoto_payload WHERE {window}"
    )
    masked = _statement(
        env.url,
        env.alice,
        "SELECT DISTINCT requester FROM main.default.kyoto_payload "
        f"WHERE {window} AND requester IS NOT NULL ORDER BY 1",
    )
    assert [r[0] for r in masked] == ["al***", "ca***"]  # alice's SQL: masked
    with chromium() as browser:
        alice = sign_in(browser, env.url, "alice@example.com", PASSWORD, quote(_ops_url(env)))
        assert _metric(alice, "Requests").replace(",", "") == str(expected[0][0])
        top = alice.locator('[data-testid="stTable"]').first
        top.wait_for(timeout=60_000)
        shown = top.inner_text()
        assert "al***" in shown and "ca***" in shown
        assert "alice@example.com" not in shown and "carol@example.com" not in shown
        # The deep link holds the view: another filter, and the URL says so.
        alice.goto(env.url + _ops_url(env, endpoint="other", tz="Asia/Tokyo"))
        assert _metric(alice, "Requests") == "0"  # alice may not read 'other': no rows
        assert "endpoint=other" in alice.url and "tz=Asia%2FTokyo" in alice.url

        bob = sign_in(browser, env.url, "bob@example.com", PASSWORD, quote(_ops_url(env)))
        bob.get_by_text("No access.", exact=False).first.wait_for(timeout=60_000)
        # Alice's deep link, opened by bob, shows bob's grants: none.
        bob.goto(env.url + _ops_url(env, endpoint="kyoto"))
        bob.get_by_text("No access.", exact=False).first.wait_for(timeout=60_000)
        # Forging the proxy's headers from the browser changes nothing.
        bob.set_extra_http_headers(
            {"X-Forwarded-Access-Token": env.alice, "X-Forwarded-User": "alice@example.com"}
        )
        bob.goto(env.url + _ops_url(env))
        bob.get_by_text("No access.", exact=False).first.wait_for(timeout=60_000)
        assert bob.get_by_text("alice@example.com").count() == 0
        assert "bob@example.com" in bob.locator('[data-testid="stSidebar"]').inner_text()


def test_pages_render_with_their_states(env: Env) -> None:
    with chromium() as browser:
        page = sign_in(browser, env.url, "alice@example.com", PASSWORD, quote(_ops_url(env)))
        _metric(page, "Requests")
        for path, text in (
            ("risk", "Risk"),
            ("trace", "Trace"),
            ("models", "Models & endpoints"),
            ("audit", "Audit"),
        ):
            page.goto(f"{env.url}/apps/dashboard/{path}?{urlencode(WINDOW)}")
            page.get_by_role("heading", name=text).first.wait_for(timeout=60_000)
            assert page.locator('[data-testid="stException"]').count() == 0
        # Audit: alice is not granted system.access.audit.
        page.goto(f"{env.url}/apps/dashboard/audit")
        page.get_by_text("no access", exact=False).first.wait_for(timeout=60_000)


def test_a_selected_row_shows_masks_and_filters_as_sql_and_stays_with_its_grants(
    env: Env,
) -> None:
    stamp = "%Y-%m-%d %H:%M:%S"
    window = (
        f"request_time >= TIMESTAMP '{START:{stamp}}' AND request_time < TIMESTAMP '{END:{stamp}}'"
    )
    # Alice's SQL: her newest row (its requester masked), and no red-team rows (row filter)
    # although the table has them (the admin sees them).
    ((request_id, requester, request),) = _statement(
        env.url,
        env.alice,
        "SELECT request_id, requester, request FROM main.default.kyoto_payload "
        f"WHERE {window} AND status_code IS NOT NULL ORDER BY request_time DESC LIMIT 1",
    )
    assert str(requester).endswith("***")
    redteam = f"SELECT count(*) FROM main.default.kyoto_payload WHERE {window} AND scan_type = "
    assert int(str(_statement(env.url, env.alice, redteam + "'redteam'")[0][0])) == 0
    assert int(str(_statement(env.url, ADMIN, redteam + "'redteam'")[0][0])) > 0
    link = _ops_url(env, row=str(request_id))
    with chromium() as browser:
        alice = sign_in(browser, env.url, "alice@example.com", PASSWORD, quote(link))
        detail = alice.locator('[data-testid="stMarkdownContainer"]', has_text="Request")
        detail = detail.filter(has_text=str(request_id)).first
        detail.wait_for(timeout=60_000)
        shown = detail.inner_text()
        assert str(requester) in shown  # the mask, exactly as her SQL returns it
        assert "alice@example.com" not in shown and "carol@example.com" not in shown
        # The request text, as her SQL returns it.
        expect(alice.locator('textarea[aria-label="request"]')).to_have_value(
            str(request), timeout=60_000
        )
        # The row filter: her view of red-team traffic is what her SQL counts, nothing.
        alice.goto(env.url + _ops_url(env, scan_type="redteam"))
        assert _metric(alice, "Requests") == "0"

        # Bob opens alice's deep link, selected row included: his grants, so no access and
        # nothing of the row.
        bob = sign_in(browser, env.url, "bob@example.com", PASSWORD, quote(link))
        bob.get_by_text("No access.", exact=False).first.wait_for(timeout=60_000)
        assert bob.get_by_text(str(request)).count() == 0
        assert bob.get_by_text(str(request_id)).count() == 0
        # His signed-in browser is no credential for the API (the session cookie is the
        # proxy's alone), and his own token is refused the table.
        statement = {
            "statement": "SELECT * FROM main.default.kyoto_payload",
            "warehouse_id": "default",
            "wait_timeout": "30s",
        }
        from_browser = bob.request.post(f"{env.url}/api/2.0/sql/statements", data=statement)
        assert from_browser.status == 401 and str(request) not in from_browser.text()
    with httpx.Client(
        base_url=env.url, headers={"Authorization": f"Bearer {env.bob}"}, timeout=60
    ) as client:
        refused = client.post("/api/2.0/sql/statements", json=statement).json()
    assert refused["status"]["state"] == "FAILED"
    assert refused["status"]["error"]["bastion_error_code"] == "PERMISSION_DENIED"
    assert str(request) not in json.dumps(refused)
