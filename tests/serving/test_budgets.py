"""Budgets: parsing, windows, rejecting, webhook alerts (signed, retried, once per crossing,
through the egress policy), spend from the usage table, who sees whose spend, the CLI."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.bootstrap import initialize
from bastion.egress import EgressPolicy
from bastion.errors import InvalidRequest
from bastion.identity.model import Caller, PrincipalKind
from bastion.platform import Platform
from bastion.serving import budgets as budgets_package
from bastion.serving.budgets import BudgetService, Period, parse_budgets, window
from bastion.serving.budgets.alerts import Alert, AlertSender, crossed
from bastion.serving.budgets.counters import MemorySpendStore, RedisSpendStore
from bastion.serving.budgets.service import applicable
from conftest import RunningServer, ServerThread, create_user, make_settings
from upstream_stub import StubServer, external_entity, start_stub


def budget(**fields: Any) -> dict[str, Any]:
    return {"name": "b", "key": "endpoint", "renewal_period": "day", "action": "reject", **fields}


# --- configuration -----------------------------------------------------------------------------


def test_parse_a_full_example() -> None:
    parsed = parse_budgets(
        [
            budget(name="team", key="user_group", principal="analysts", cost=250.0),
            budget(
                name="daily",
                key="user",
                tokens=200_000,
                action="alert",
                alert_at_percent=[100, 80],
                webhook={"url": "https://hooks.example.com/b", "secret": "{{secrets/ops/hook}}"},
            ),
        ],
        [
            {
                "served_entity_name": "gpt",
                "input_per_million_tokens": 2.5,
                "output_per_million_tokens": 10,
            }
        ],
    )
    assert parsed is not None
    team, daily = parsed.budgets
    assert (team.unit, team.limit, team.principal) == ("cost", 250.0, "analysts")
    assert daily.alert_at_percent == (80, 100) and daily.is_default
    assert daily.describe() == "200,000 tokens per day"
    assert parsed.amount(team, "gpt", 1_000_000, 100_000) == pytest.approx(3.5)
    assert parsed.amount(team, "unpriced", 1000, 1000) == 0.0
    assert parsed.amount(daily, "gpt", 10, 5) == 15.0
    assert parse_budgets(None) is None and parse_budgets([]) is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"budgets": "x"}, "must be a list of budgets"),
        ({"budgets": [budget(tokens=1, bogus=1)]}, "unknown key 'bogus'"),
        ({"budgets": [budget(tokens=1, cost=1.0)]}, "exactly one of 'tokens'"),
        ({"budgets": [budget()]}, "exactly one of 'tokens'"),
        ({"budgets": [budget(tokens=-1)]}, ".tokens must be a whole number"),
        ({"budgets": [budget(cost=float("nan"))]}, ".cost must be a number"),
        ({"budgets": [budget(tokens=1, renewal_period="hour")]}, "'day', 'week' or 'month'"),
        ({"budgets": [budget(tokens=1, key="team")]}, ".key must be one of"),
        ({"budgets": [budget(tokens=1, principal="x")]}, "takes no principal"),
        ({"budgets": [budget(tokens=1, key="user_group")]}, "without 'principal'"),
        ({"budgets": [budget(tokens=1, action="alert")]}, "without a 'webhook'"),
        ({"budgets": [budget(tokens=1, action="warn")]}, "'alert' or 'reject'"),
        ({"budgets": [budget(tokens=1, alert_at_percent=[0])]}, "1 to 1000"),
        ({"budgets": [budget(tokens=1, webhook={"url": "ftp://x"})]}, "http(s) URL"),
        ({"budgets": [budget(tokens=1), budget(tokens=2)]}, "repeats the name 'b'"),
        ({"budgets": [budget(name="bad name", tokens=1)]}, ".name must be"),
        ({"budgets": [budget(tokens=1)] * 21}, "at most 20"),
        ({"pricing": [{"served_entity_name": "x", "input_per_million_tokens": -1}]}, "0 or more"),
    ],
)
def test_parse_errors_say_what_to_fix(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_budgets(raw.get("budgets"), raw.get("pricing"))
    assert message in caught.value.message


def test_windows_are_utc_days_weeks_from_monday_and_months() -> None:
    at = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    day, week, month = (window(p, at) for p in (Period.DAY, Period.WEEK, Period.MONTH))
    assert (day.start.day, day.end, day.id) == (31, datetime(2027, 1, 1, tzinfo=UTC), "d20261231")
    assert week.start == datetime(2026, 12, 28, tzinfo=UTC) and week.start.weekday() == 0
    assert (month.start.month, month.end, month.id) == (
        12,
        datetime(2027, 1, 1, tzinfo=UTC),
        "m202612",
    )
    assert day.seconds_left(at) == 60


def test_thresholds_cross_once_each() -> None:
    assert crossed(0, 50, 100, (50, 100)) == [50]
    assert crossed(50, 50, 100, (50, 100)) == []
    assert crossed(40, 120, 100, (50, 100)) == [50, 100]


def _caller(name: str, *groups: str, kind: PrincipalKind = PrincipalKind.USER) -> Caller:
    return Caller(1, kind, name, name, frozenset(groups), frozenset())


def test_which_budgets_count_a_caller() -> None:
    parsed = parse_budgets(
        [
            budget(name="all", tokens=100),
            budget(name="team", key="user_group", principal="ds", tokens=50),
            budget(name="each", key="user", tokens=10),
            budget(name="ann", key="user", principal="Ann@X", tokens=20),
            budget(name="apps", key="service_principal", tokens=30),
        ]
    )
    assert parsed is not None
    names = lambda who: [b.name for b in applicable(parsed, who)]  # noqa: E731
    assert names(_caller("ann@x", "ds")) == ["all", "team", "ann"]  # her own, not the default
    assert names(_caller("bob@x")) == ["all", "each"]
    assert names(_caller("app", kind=PrincipalKind.SERVICE_PRINCIPAL)) == ["all", "apps"]


def test_package_exports_its_api() -> None:
    for name in budgets_package.__all__:
        assert hasattr(budgets_package, name)


# --- a webhook receiver ------------------------------------------------------------------------


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fail_first: int = 0) -> None:
        super().__init__(("127.0.0.1", 0), _Hook)
        self.fail_first = fail_first
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook?token=abc"

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(body) for _, body in self.calls]


class _Hook(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, *_args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        with self.server.lock:
            self.server.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
            failing = self.server.fail_first > 0
            self.server.fail_first -= 1
        self.send_response(503 if failing else 204)
        self.send_header("content-length", "0")
        self.end_headers()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(fail_first=1)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_failed_delivery_is_retried_with_the_same_delivery_id(receiver: Receiver) -> None:
    delays: list[float] = []
    sender = AlertSender(EgressPolicy(("127.0.0.1",)), backoff_s=0.5, sleep=delays.append)
    sender.send(Alert(receiver.url, {"budget": "b"}, secret="s3cret"))
    assert sender.wait_idle()
    sender.close()
    assert len(receiver.calls) == 2 and delays == [0.5]
    (first, body), (second, _) = receiver.calls
    assert first["x-bastion-delivery"] == second["x-bastion-delivery"]
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert second["x-bastion-signature"] == f"sha256={expected}"
    assert sender.counts == {"retried": 1, "delivered": 1}


def test_a_delivery_the_egress_policy_refuses_is_not_sent(receiver: Receiver) -> None:
    sender = AlertSender(EgressPolicy(()), sleep=lambda _s: None)
    sender.send(Alert(receiver.url, {"budget": "b"}))
    assert sender.wait_idle()
    sender.close()
    assert receiver.calls == [] and sender.counts == {"failed": 1}


# --- through the gateway -----------------------------------------------------------------------


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = start_stub("ok")
    yield server
    server.shutdown()
    server.server_close()


def _create(server: RunningServer, stub: StubServer, name: str, ai_gateway: dict[str, Any]) -> None:
    with server.admin() as admin:
        reply = admin.post(
            "/api/2.0/serving-endpoints",
            json={
                "name": name,
                "config": {"served_entities": [external_entity(stub)]},
                "ai_gateway": ai_gateway,
            },
        )
        assert reply.status_code == 200, reply.text


def _grant(server: RunningServer, endpoint: str, user: str, level: str = "CAN_QUERY") -> None:
    with server.admin() as admin:
        reply = admin.patch(
            f"/api/2.0/permissions/serving-endpoints/{endpoint}",
            json={"access_control_list": [{"user_name": user, "permission_level": level}]},
        )
        assert reply.status_code == 200, reply.text


def _ask(server: RunningServer, token: str, endpoint: str) -> httpx.Response:
    with server.client(token) as client:
        return client.post(
            f"/serving-endpoints/{endpoint}/invocations",
            json={"messages": [{"role": "user", "content": "hi"}]},
        )


def test_a_user_budget_rejects_that_user_only_naming_the_budget(
    server: RunningServer, stub: StubServer
) -> None:
    _create(server, stub, "capped", {"budgets": [budget(name="each", key="user", tokens=4)]})
    _, ann = create_user(server, "ann@example.com")
    _, bob = create_user(server, "bob@example.com")
    for user in ("ann@example.com", "bob@example.com"):
        _grant(server, "capped", user)
    assert [_ask(server, ann, "capped").status_code for _ in range(3)] == [200, 200, 429]
    refused = _ask(server, ann, "capped")
    assert refused.status_code == 429
    assert refused.json() == {
        "error_code": "REQUEST_LIMIT_EXCEEDED",
        "message": refused.json()["message"],
    }
    assert refused.json()["message"].startswith(
        "Budget 'each' of endpoint 'capped' is used up: 4 tokens per day for user "
        "'ann@example.com' (spent 4)."
    )
    assert int(refused.headers["retry-after"]) >= 1
    assert _ask(server, bob, "capped").status_code == 200  # bob's own budget has room


def test_spend_is_visible_to_whoever_may_see_that_usage(
    server: RunningServer, stub: StubServer
) -> None:
    _create(
        server,
        stub,
        "shared",
        {
            "budgets": [
                budget(name="all", tokens=1000),
                budget(
                    name="each",
                    key="user",
                    tokens=100,
                    action="alert",
                    webhook={"url": "http://127.0.0.1:9/never"},
                ),
            ]
        },
    )
    _, ann = create_user(server, "ann@example.com")
    _, bob = create_user(server, "bob@example.com")
    _, eve = create_user(server, "eve@example.com")  # may query, nothing more
    for user in ("ann@example.com", "bob@example.com", "eve@example.com"):
        _grant(server, "shared", user)
    assert _ask(server, ann, "shared").status_code == 200
    assert _ask(server, bob, "shared").status_code == 200
    assert _ask(server, bob, "shared").status_code == 200
    asyncio.run(asyncio.sleep(0))

    with server.client(eve) as client:
        mine = client.get("/api/2.0/serving-endpoints/shared/budgets").json()["budgets"]
        by_name = {b["name"]: b for b in mine}
        # The endpoint budget counts everyone: its spend is not hers to see.
        assert by_name["all"]["spend_visible"] is False and by_name["all"]["spend"] == []
        assert "webhook" not in by_name["each"]  # only managers see where alerts go
        assert [s["subject"] for s in by_name["each"]["spend"]] == ["eve@example.com"]
        assert by_name["each"]["spend"][0]["spent"] == 0
        other = client.get(
            "/api/2.0/serving-endpoints/shared/budgets/each?principal=bob@example.com"
        )
        assert other.status_code == 403
        assert other.json()["error_code"] == "PERMISSION_DENIED"
    with server.client(bob) as client:
        own = client.get("/api/2.0/serving-endpoints/shared/budgets/each").json()
        assert own["spend"] == [
            {
                "subject": "bob@example.com",
                "spent": 4.0,
                "remaining": 96.0,
                "used_percent": 4.0,
                "exhausted": False,
                "baseline_pending": True,
            }
        ]
    with server.admin() as admin:  # the manager sees every subject, and the webhook
        each = admin.get("/api/2.0/serving-endpoints/shared/budgets/each").json()
        assert {s["subject"]: s["spent"] for s in each["spend"]} == {
            "ann@example.com": 2.0,
            "bob@example.com": 4.0,
        }
        assert each["webhook"] == {"url": "http://127.0.0.1:9/never"}
        assert (
            admin.get("/api/2.0/serving-endpoints/shared/budgets/all").json()["spend"][0]["spent"]
            == 6.0
        )
        # Readers of the usage table see it all too.
        grant = admin.patch(
            "/api/2.1/unity-catalog/permissions/table/system.serving.endpoint_usage",
            json={"changes": [{"principal": "eve@example.com", "add": ["SELECT"]}]},
        )
        assert grant.status_code == 200, grant.text
        for securable, name, privilege in (
            ("catalog", "system", "USE CATALOG"),
            ("schema", "system.serving", "USE SCHEMA"),
        ):
            admin.patch(
                f"/api/2.1/unity-catalog/permissions/{securable}/{name}",
                json={"changes": [{"principal": "eve@example.com", "add": [privilege]}]},
            ).raise_for_status()
    with server.client(eve) as client:
        seen = client.get("/api/2.0/serving-endpoints/shared/budgets/all").json()
        assert seen["spend_visible"] is True and seen["spend"][0]["spent"] == 6.0
    _, mallory = create_user(server, "mallory@example.com")  # no access to the endpoint
    with server.client(mallory) as client:
        assert client.get("/api/2.0/serving-endpoints/shared/budgets").status_code == 403
    with server.admin() as admin:
        missing = admin.get("/api/2.0/serving-endpoints/shared/budgets/nope")
        assert missing.status_code == 404 and missing.json()["error_code"]


def test_bad_budgets_and_internal_webhooks_are_refused_with_4xx(
    tmp_path: Path, database_url: str, stub: StubServer
) -> None:
    platform = Platform(make_settings(tmp_path / "home", database_url, egress_allow_hosts=[]))
    initialize(platform)
    try:
        with ServerThread(platform) as url:
            server = RunningServer(url=url, platform=platform)
            with server.admin() as admin:
                reply = admin.post(
                    "/api/2.0/serving-endpoints",
                    json={"name": "e", "config": {"served_entities": [external_entity(stub)]}},
                )
                assert reply.status_code == 200, reply.text
                for webhook in (
                    "http://127.0.0.1:8080/hook",
                    "http://169.254.169.254/latest/meta-data",
                    "http://localhost/hook",
                    "http://[::1]/hook",
                ):
                    refused = admin.put(
                        "/api/2.0/serving-endpoints/e/ai-gateway",
                        json={
                            "budgets": [budget(tokens=10, action="alert", webhook={"url": webhook})]
                        },
                    )
                    assert refused.status_code == 403, (webhook, refused.text)
                for bad in (
                    {"budgets": [budget(tokens="many")]},
                    {"budgets": {"name": "b"}},
                    {"budgets": [budget(tokens=1, webhook={"url": "http://x", "secret": "plain"})]},
                    {"pricing": [{"served_entity_name": 3}]},
                ):
                    reply = admin.put("/api/2.0/serving-endpoints/e/ai-gateway", json=bad)
                    assert reply.status_code == 400, (bad, reply.text)
                    assert reply.json()["error_code"] == "INVALID_PARAMETER_VALUE"
                assert (
                    admin.get(
                        "/api/2.0/serving-endpoints/e/budgets?principal=" + "x" * 300
                    ).status_code
                    == 400
                )
    finally:
        platform.close()


def test_alerts_fire_once_per_threshold_signed(
    server: RunningServer, stub: StubServer, receiver: Receiver
) -> None:
    receiver.fail_first = 0
    with server.admin() as admin:
        admin.post("/api/2.0/secrets/scopes/create", json={"scope": "ops"}).raise_for_status()
        admin.post(
            "/api/2.0/secrets/put", json={"scope": "ops", "key": "hook", "string_value": "k3y"}
        ).raise_for_status()
    alerting = budget(
        name="watch",
        tokens=8,
        action="alert",
        alert_at_percent=[50, 100],
        webhook={"url": receiver.url, "secret": "{{secrets/ops/hook}}"},
    )
    _create(server, stub, "watched", {"budgets": [alerting]})
    statuses = [_ask(server, server.admin_token, "watched").status_code for _ in range(8)]
    assert statuses == [200] * 8  # alert budgets never refuse
    service: BudgetService = server.platform.budgets  # type: ignore[attr-defined]
    deadline = 100
    while len(receiver.calls) < 2 and deadline:
        deadline -= 1
        service.sender.wait_idle(0.1)
    assert service.sender.wait_idle()
    bodies = receiver.bodies()
    assert [b["threshold_percent"] for b in bodies] == [50, 100]
    assert {b["budget"] for b in bodies} == {"watch"} and bodies[1]["spent"] >= 8
    for headers, body in receiver.calls:
        expected = hmac.new(b"k3y", body, hashlib.sha256).hexdigest()
        assert headers["x-bastion-signature"] == f"sha256={expected}"


def test_spend_before_a_counter_comes_from_the_usage_table(
    platform: Platform, stub: StubServer
) -> None:
    with ServerThread(platform) as url:
        server = RunningServer(url=url, platform=platform)
        _create(server, stub, "metered", {})
        for _ in range(3):
            assert _ask(server, server.admin_token, "metered").status_code == 200
        platform.writer.flush()  # the usage rows are in Delta now
        with server.admin() as admin:
            reply = admin.put(
                "/api/2.0/serving-endpoints/metered/ai-gateway",
                json={"budgets": [budget(name="month", renewal_period="month", tokens=100)]},
            )
            assert reply.status_code == 200, reply.text
        assert _ask(server, server.admin_token, "metered").status_code == 200
        service: BudgetService = platform.budgets  # type: ignore[attr-defined]
        asyncio.run(asyncio.sleep(0.2))
        assert service.fill_baselines(force=True) == 1
        with server.admin() as admin:
            view = admin.get("/api/2.0/serving-endpoints/metered/budgets/month").json()
    assert view["spend"][0]["spent"] == 8.0  # 3 earlier requests from Delta + 1 counted
    assert view["spend"][0]["baseline_pending"] is False


def test_two_replicas_claim_each_crossing_once(redis_url: str, receiver: Receiver) -> None:
    receiver.fail_first = 0
    store_a, store_b = RedisSpendStore(redis_url), RedisSpendStore(redis_url)
    token = "bastion:bg:{e}:b:tokens:d1:*:alert:100:10.0"
    assert [store_a.claim(token, 60), store_b.claim(token, 60)] == [True, False]
    assert MemorySpendStore().claim(token, 60) is True


def test_the_cli_sets_lists_and_deletes_budgets(
    server: RunningServer, stub: StubServer, tmp_path: Path
) -> None:
    _create(server, stub, "clied", {})
    env = {
        **os.environ,
        "BASTION_HOST": server.url,
        "BASTION_TOKEN": server.admin_token,
        "BASTION_CONFIG_FILE": str(tmp_path / "config"),
        "COLUMNS": "200",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bastion.cli.main", "budgets", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    made = run("set", "clied", "daily", "--period", "day", "--tokens", "50", "--key", "user")
    assert made.returncode == 0, made.stderr
    priced = run("price", "clied", "stub", "--input-per-million", "1", "--output-per-million", "2")
    assert priced.returncode == 0, priced.stderr
    assert _ask(server, server.admin_token, "clied").status_code == 200
    listed = json.loads(run("list", "clied", "--json").stdout)
    assert listed[0]["name"] == "daily" and listed[0]["spend"][0]["spent"] == 2.0
    table = run("list", "clied")
    assert "daily" in table.stdout and "admin" in table.stdout
    one = json.loads(run("get", "clied", "daily").stdout)
    assert one["tokens"] == 50 and one["key"] == "user"
    bad = run("set", "clied", "x", "--period", "hour", "--tokens", "1")
    assert bad.returncode == 1 and "'day', 'week' or 'month'" in bad.stderr
    assert run("delete", "clied", "daily").returncode == 0
    assert json.loads(run("list", "clied", "--json").stdout) == []
