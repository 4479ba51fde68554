"""Two replicas behind HAProxy on loopback, sharing PostgreSQL, Redis and table storage.

Replica A is ``bastion up`` (it migrates and bootstraps), replica B ``bastion serve`` (it
joins); both are real server processes on one ``BASTION_HOME`` (the shared table storage;
each claims a write-ahead log slot of its own). Polling of the metastore's change counter is
switched off (an hour), so whatever reaches the other replica arrives through Redis.

The acceptance of issue #16:

* a per-user limit of N calls a minute admits exactly N across both replicas;
* a token or grant revoked through one replica is refused by the other;
* a ``reject`` budget stops traffic on both;
* ``kill -9`` of one replica under load loses no acknowledged row: every acknowledged
  ``request_id`` is in the payload table exactly once after the restart.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from deltalake import DeltaTable

from conftest import POSTGRES_URL, _postgres_database
from services import RedisServer, free_port, haproxy
from upstream_stub import StubServer, external_entity, start_stub

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TOKEN = "bstp_" + "c" * 40
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Replica:
    name: str
    port: int
    args: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bastion.cli.main", *self.args, "--port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-4000:]
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"replica {self.name} did not start:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples that carry ``labels``."""
        text = httpx.get(f"{self.url}/metrics", headers=AUTH, timeout=10).text
        wanted = [f'{key}="{value}"' for key, value in labels.items()]
        return sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith((name + "{", name + " ")) and all(w in line for w in wanted)
        )


@dataclass
class Deployment:
    home: Path
    a: Replica
    b: Replica
    lb: str
    redis: RedisServer
    stub: StubServer
    users: dict[str, str] = field(default_factory=dict)

    def admin(self, base: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=base or self.lb, headers=AUTH, timeout=30)


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, redis_service: RedisServer
) -> Iterator[Deployment]:
    if not POSTGRES_URL:
        pytest.skip("BASTION_TEST_POSTGRES_URL is not set")
    import redis

    redis.Redis.from_url(redis_service.url).flushall()
    work = tmp_path_factory.mktemp("replicas")
    home = work / "home"
    databases = _postgres_database()
    database_url = next(databases)
    stub = start_stub("ok")
    env = {
        **os.environ,
        "BASTION_HOME": str(home),
        "BASTION_DATABASE_URL": database_url,
        "BASTION_REDIS_URL": redis_service.url,
        "BASTION_ADMIN_TOKEN": TOKEN,
        "BASTION_EGRESS_ALLOW_HOSTS": '["127.0.0.1"]',
        # Only Redis can carry a change to the other replica within the test.
        "BASTION_CACHE_POLL_INTERVAL_S": "3600",
        # Nothing reaches Delta by itself: a kill finds acknowledged rows only in the log.
        "BASTION_WRITER_FLUSH_INTERVAL_S": "3600",
        "BASTION_WRITER_FLUSH_ROWS": "1000000",
    }
    a = Replica(
        "A", free_port(), ["up", "--no-default-model", "--workers", "1"], env, work / "a.log"
    )
    b = Replica("B", free_port(), ["serve", "--workers", "1"], env, work / "b.log")
    try:
        a.start()
        b.start()
        with haproxy(work / "haproxy", [a.port, b.port]) as lb_port:
            yield Deployment(home, a, b, f"http://127.0.0.1:{lb_port}", redis_service, stub)
    finally:
        b.stop()
        a.stop()
        stub.shutdown()
        stub.server_close()
        for _ in databases:  # drops the database
            pass


def _user(deployment: Deployment, name: str) -> str:
    """Create a user (through the load balancer), log in as them and make them a personal
    access token; returns the token."""
    if name in deployment.users:
        return deployment.users[name]
    password = "pw-" + name
    with deployment.admin() as admin:
        created = admin.post(
            "/api/2.0/preview/scim/v2/Users", json={"userName": name, "password": password}
        )
        assert created.status_code == 201, created.text
    login = httpx.post(
        f"{deployment.lb}/oidc/v1/token",
        data={"grant_type": "password", "username": name, "password": password},
    )
    assert login.status_code == 200, login.text
    access = login.json()["access_token"]
    made = httpx.post(
        f"{deployment.lb}/api/2.0/token/create",
        json={"lifetime_seconds": 3600, "comment": "replica tests"},
        headers={"Authorization": f"Bearer {access}"},
    )
    assert made.status_code == 200, made.text
    deployment.users[name] = made.json()["token_value"]
    return deployment.users[name]


def _endpoint(
    deployment: Deployment, name: str, ai_gateway: dict[str, object], *users: str
) -> None:
    with deployment.admin() as admin:
        reply = admin.post(
            "/api/2.0/serving-endpoints",
            json={
                "name": name,
                "config": {"served_entities": [external_entity(deployment.stub)]},
                "ai_gateway": ai_gateway,
            },
        )
        assert reply.status_code == 200, reply.text
        acl = [{"user_name": u, "permission_level": "CAN_QUERY"} for u in users]
        granted = admin.patch(
            f"/api/2.0/permissions/serving-endpoints/{name}", json={"access_control_list": acl}
        )
        assert granted.status_code == 200, granted.text


def _ask(base: str, token: str, endpoint: str, client_request_id: str = "") -> httpx.Response:
    body: dict[str, object] = {"messages": [{"role": "user", "content": "hi"}]}
    if client_request_id:
        body["client_request_id"] = client_request_id
    return httpx.post(
        f"{base}/serving-endpoints/{endpoint}/invocations",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def _requests_on(replica: Replica, endpoint: str) -> float:
    return replica.metric("bastion_gateway_requests_total", endpoint=endpoint)


def test_a_per_user_limit_is_enforced_once_across_both_replicas(deployment: Deployment) -> None:
    token = _user(deployment, "ann@example.com")
    limits = [{"key": "user", "renewal_period": "minute", "calls": 4}]
    _endpoint(deployment, "limited", {"rate_limits": limits}, "ann@example.com")
    statuses = [_ask(deployment.lb, token, "limited").status_code for _ in range(10)]
    assert Counter(statuses) == {200: 4, 429: 6}, statuses
    # Both replicas served (HAProxy round-robin): the limit was enforced jointly.
    assert _requests_on(deployment.a, "limited") >= 1
    assert _requests_on(deployment.b, "limited") >= 1
    # And each replica on its own refuses now too.
    assert _ask(deployment.a.url, token, "limited").status_code == 429
    assert _ask(deployment.b.url, token, "limited").status_code == 429


def _refused_on(base: str, token: str, endpoint: str, status: int) -> float:
    """Seconds until ``base`` refuses (polled every 20 ms, at most 10 s)."""
    began = time.monotonic()
    while time.monotonic() - began < 10:
        if _ask(base, token, endpoint).status_code == status:
            return time.monotonic() - began
        time.sleep(0.02)
    raise AssertionError(f"{base} still serves {endpoint} after 10 s")


def test_a_revocation_through_one_replica_is_refused_by_the_other(deployment: Deployment) -> None:
    token = _user(deployment, "bob@example.com")
    _endpoint(deployment, "revocable", {}, "bob@example.com")
    assert _ask(deployment.a.url, token, "revocable").status_code == 200
    assert _ask(deployment.b.url, token, "revocable").status_code == 200

    # The grant, removed through A: B refuses (403) without polling the metastore.
    with deployment.admin(deployment.a.url) as admin:
        acl = admin.get("/api/2.0/permissions/serving-endpoints/revocable").json()
        kept = [
            {"user_name": e["user_name"], "permission_level": "CAN_MANAGE"}
            for e in acl["access_control_list"]
            if e.get("user_name") and e["user_name"] != "bob@example.com"
        ]
        reply = admin.put(
            "/api/2.0/permissions/serving-endpoints/revocable", json={"access_control_list": kept}
        )
        assert reply.status_code == 200, reply.text
    grant_s = _refused_on(deployment.b.url, token, "revocable", 403)

    # The token, revoked by its owner through B: A refuses it (401).
    _endpoint(deployment, "revocable-2", {}, "bob@example.com")
    assert _ask(deployment.a.url, token, "revocable-2").status_code == 200
    with httpx.Client(
        base_url=deployment.b.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as bob:
        token_id = next(t["token_id"] for t in bob.get("/api/2.0/token/list").json()["token_infos"])
        assert bob.post("/api/2.0/token/delete", json={"token_id": token_id}).status_code == 200
    token_s = _refused_on(deployment.a.url, token, "revocable-2", 401)
    print(f"refused by the other replica after {grant_s:.3f} s (grant), {token_s:.3f} s (token)")
    assert deployment.b.metric("bastion_cache_invalidations_total") > 0


def test_a_reject_budget_stops_traffic_on_both_replicas(deployment: Deployment) -> None:
    token = _user(deployment, "cid@example.com")
    budgets = [
        {
            "name": "tiny",
            "key": "endpoint",
            "renewal_period": "day",
            "tokens": 10,
            "action": "reject",
        }
    ]
    _endpoint(deployment, "budgeted", {"budgets": budgets}, "cid@example.com")
    statuses = []
    for _ in range(30):  # 2 tokens a request: about 5 get through before the budget is used up
        statuses.append(_ask(deployment.lb, token, "budgeted").status_code)
        if statuses[-1] == 429:
            break
    assert statuses[-1] == 429 and 5 <= statuses.count(200) <= 7, statuses
    for replica in (deployment.a, deployment.b):
        refused = _ask(replica.url, token, "budgeted")
        assert refused.status_code == 429
        assert "Budget 'tiny' of endpoint 'budgeted' is used up" in refused.json()["message"]
        assert refused.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
        openai = httpx.post(
            f"{replica.url}/serving-endpoints/chat/completions",
            json={"model": "budgeted", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert openai.status_code == 429
        assert openai.json()["error"]["type"] == "rate_limit_error"
        assert openai.json()["error"]["code"] == "budget_exceeded"
        assert "'tiny'" in openai.json()["error"]["message"]
        anthropic = httpx.post(
            f"{replica.url}/serving-endpoints/anthropic/v1/messages",
            json={
                "model": "budgeted",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "hi"}],
            },
            headers={"x-api-key": token},
        )
        assert anthropic.status_code == 429
        assert anthropic.json()["type"] == "error"
        assert anthropic.json()["error"]["type"] == "rate_limit_error"
        assert "'tiny'" in anthropic.json()["error"]["message"]
        assert int(anthropic.headers["retry-after"]) >= 1
    # The spend is visible to the endpoint's manager through either replica.
    with deployment.admin(deployment.b.url) as admin:
        view = admin.get("/api/2.0/serving-endpoints/budgeted/budgets/tiny").json()
    assert view["spend"][0]["exhausted"] is True and view["spend"][0]["spent"] >= 10


def _payload_ids(home: Path, table: str) -> Counter[str]:
    path = home / "warehouse" / "main" / "default" / table
    if not (path / "_delta_log").exists():
        return Counter()
    column = DeltaTable(str(path)).to_pyarrow_table(columns=["request_id"]).column(0)
    return Counter(column.to_pylist())


def test_kill_9_of_one_replica_under_load_loses_no_acknowledged_row(
    deployment: Deployment,
) -> None:
    token = _user(deployment, "dee@example.com")
    _endpoint(deployment, "durable", {}, "dee@example.com")
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(
            base_url=deployment.lb, headers={"Authorization": f"Bearer {token}"}, timeout=10
        ) as client:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    reply = client.post(
                        "/serving-endpoints/durable/invocations",
                        json={
                            "messages": [{"role": "user", "content": "hi"}],
                            "client_request_id": f"w{worker}-{n}",
                        },
                    )
                except httpx.HTTPError:
                    continue  # no response: nothing was acknowledged
                if reply.status_code == 200:
                    with lock:
                        acknowledged.append(reply.headers["x-request-id"])

    threads = [threading.Thread(target=load, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while len(acknowledged) < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        served_by_b = _requests_on(deployment.b, "durable")
        deployment.b.kill()
        with lock:
            at_kill = len(acknowledged)
        while len(acknowledged) < at_kill + 100 and time.monotonic() < deadline:
            time.sleep(0.05)  # A serves on alone
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert served_by_b > 0
    before = _payload_ids(deployment.home, "durable_payload")
    assert sum(before.values()) < len(acknowledged), "rows reached Delta before the kill"

    deployment.b.start()  # claims its write-ahead log slot again and replays it
    deadline = time.monotonic() + 60
    while deployment.b.metric("bastion_writer_pending_rows", table="main.default.durable_payload"):
        assert time.monotonic() < deadline, "replay did not finish"
        time.sleep(0.5)
    deployment.b.stop()  # a clean stop commits what each replica holds
    deployment.a.stop()
    after = _payload_ids(deployment.home, "durable_payload")
    missing = set(acknowledged) - set(after)
    duplicated = {rid: n for rid, n in after.items() if n > 1}
    print(
        f"acknowledged {len(acknowledged)} ({len(set(acknowledged))} distinct), rows before "
        f"restart {sum(before.values())}, after {sum(after.values())}, missing {len(missing)}, "
        f"duplicated {len(duplicated)}"
    )
    assert len(set(acknowledged)) == len(acknowledged)
    assert not missing and not duplicated
