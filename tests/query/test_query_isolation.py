"""One user's SQL can neither exhaust the server nor starve other users (over HTTP).

A real server with three SQL workers (two statements at once per user, four outstanding per
user), ordinary users created through SCIM, and the Statement Execution API. The server runs
in this test process; its SQL workers are child processes, so this process's peak RSS is the
server's.
"""

from __future__ import annotations

import base64
import os
import signal
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from sql_fixtures import create_table

from bastion.bootstrap import initialize
from bastion.governance.privileges import Privilege
from bastion.governance.securables import SecurableType
from bastion.governance.store import GrantChange
from bastion.platform import Platform
from conftest import RunningServer, ServerThread, create_user, make_settings

MIB = 1024 * 1024
NUMBERS = "main.default.numbers"
HEAVY = (
    f"SELECT count(*) AS c FROM {NUMBERS} a, {NUMBERS} b, {NUMBERS} c "
    "WHERE (a.n * 7 + b.n * 3 + c.n) % 1000003 = 17"
)
# Concatenation through nested CTEs: each level is four times the one before (10 x 4^15 bytes
# at the end), no single function call asks for much.
BLOWUP = (
    "WITH l0 AS (SELECT 'xxxxxxxxxx' AS s), "
    + ", ".join(f"l{i} AS (SELECT s || s || s || s AS s FROM l{i - 1})" for i in range(1, 16))
    + " SELECT length(s) AS n FROM l15"
)
WAIT = 60.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("isolation")
    settings = make_settings(
        home / "home",
        f"sqlite:///{home / 'metastore.db'}",
        sql_workers=3,
        sql_max_running_per_principal=2,
        sql_max_outstanding_per_principal=4,
        sql_retained_result_bytes=MIB,
        sql_statement_timeout_s=300,
    )
    platform = Platform(settings)
    initialize(platform)
    admin = platform.identity.find("admin")
    assert admin is not None
    create_table(platform, NUMBERS, pa.table({"n": pa.array(range(100_000), pa.int64())}), admin.id)
    try:
        with ServerThread(platform) as url:
            yield RunningServer(url=url, platform=platform)
    finally:
        platform.close()


@pytest.fixture(scope="module")
def users(server: RunningServer) -> dict[str, httpx.Client]:
    clients = {}
    for name in ("ann@example.com", "ben@example.com"):
        _, token = create_user(server, name)
        record = server.platform.identity.find(name)
        assert record is not None
        node = server.platform.authorizer.node(SecurableType.TABLE, NUMBERS)
        server.platform.governance.update_grants(
            node.id, [GrantChange(record.id, add=(Privilege.SELECT,))]
        )
        clients[name.split("@")[0]] = server.client(token)
    return clients


def _submit(client: httpx.Client, statement: str, **options: Any) -> httpx.Response:
    return client.post(
        "/api/2.0/sql/statements",
        json={"statement": statement, "wait_timeout": "30s", **options},
    )


def _run(client: httpx.Client, statement: str, **options: Any) -> dict[str, Any]:
    """Execute and poll until the statement is done; its final body."""
    response = _submit(client, statement, **options)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    deadline = time.monotonic() + WAIT
    while body["status"]["state"] in ("PENDING", "RUNNING"):
        assert time.monotonic() < deadline, body
        time.sleep(0.1)
        body = client.get(f"/api/2.0/sql/statements/{body['statement_id']}").json()
    return body


def _status(process: str = "self") -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{process}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(value.split()[0]) * 1024
    return values


def _reset_peak_rss() -> None:
    # Where the kernel refuses, the peak includes earlier tests: never less than the truth.
    with suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _sql_workers() -> list[int]:
    """Process ids of this process's SQL workers."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == os.getpid() and b"bastion.query.sqlworker" in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_huge_values_fail_in_a_worker_while_the_server_stays_small(
    users: dict[str, httpx.Client],
) -> None:
    ann, ben = users["ann"], users["ben"]
    assert _run(ann, "SELECT 1 AS warm")["status"]["state"] == "SUCCEEDED"
    _reset_peak_rss()
    before = _status()
    for statement in ("SELECT length(repeat('x', 2000000000)) AS n", BLOWUP):
        body = _run(ann, statement)
        assert body["status"]["state"] == "FAILED", body
        assert body["status"]["error"]["error_code"] == "RESOURCE_EXHAUSTED"
        assert "memory" in body["status"]["error"]["message"]
    growth = _status()["VmHWM"] - before["VmHWM"]
    assert growth < 200 * MIB, f"the server's peak RSS grew by {growth / MIB:.0f} MiB"
    # The same user and another one carry on.
    for client in (ann, ben):
        body = _run(client, f"SELECT count(*) AS n FROM {NUMBERS}")
        assert body["status"]["state"] == "SUCCEEDED"
        assert body["result"]["data_array"] == [["100000"]]


def test_byte_limit_truncates_the_result(users: dict[str, httpx.Client]) -> None:
    statement = f"SELECT n, repeat('x', 100) AS s FROM {NUMBERS} ORDER BY n LIMIT 50000"
    body = _run(users["ann"], statement, byte_limit=100_000)
    assert body["status"]["state"] == "SUCCEEDED"
    manifest, result = body["manifest"], body["result"]
    assert manifest["truncated"] is True
    count = manifest["total_row_count"]
    assert 0 < count < 1000 and result["row_count"] == count
    assert [row[0] for row in result["data_array"]] == [str(i) for i in range(count)]
    arrow = _run(users["ann"], statement, byte_limit=100_000, format="ARROW_STREAM")
    table = pa.ipc.open_stream(base64.b64decode(arrow["result"]["attachment"])).read_all()
    assert arrow["manifest"]["truncated"] is True
    assert table.column("n").to_pylist() == list(range(count))
    untouched = _run(users["ann"], statement, row_limit=10)
    assert untouched["manifest"]["truncated"] is True
    assert untouched["manifest"]["total_row_count"] == 10


def test_streamed_bodies_are_whole_json_whatever_the_shape(
    users: dict[str, httpx.Client],
) -> None:
    ann = users["ann"]
    empty = _run(ann, f"SELECT n FROM {NUMBERS} WHERE n < 0")
    assert empty["result"]["data_array"] == [] and empty["manifest"]["total_row_count"] == 0
    arrow = _run(ann, f"SELECT n FROM {NUMBERS} WHERE n < 0", format="ARROW_STREAM")
    table = pa.ipc.open_stream(base64.b64decode(arrow["result"]["attachment"])).read_all()
    assert table.num_rows == 0 and table.schema.names == ["n"]
    mixed = _run(ann, "SELECT 1 AS a, NULL AS b, 'x\"y' AS c, true AS d")
    assert mixed["result"]["data_array"] == [["1", None, 'x"y', "true"]]
    many = _run(ann, f"SELECT n FROM {NUMBERS} ORDER BY n", format="ARROW_STREAM")
    table = pa.ipc.open_stream(base64.b64decode(many["result"]["attachment"])).read_all()
    assert table.column("n").to_pylist() == list(range(100_000))
    chunk = ann.get(f"/api/2.0/sql/statements/{mixed['statement_id']}/result/chunks/0").json()
    assert chunk == {
        "chunk_index": 0,
        "row_offset": 0,
        "row_count": 1,
        "data_array": [["1", None, 'x"y', "true"]],
    }
    cancelled = _submit(ann, HEAVY, wait_timeout="5s", on_wait_timeout="CANCEL").json()
    assert cancelled["status"]["state"] == "CANCELED"


def test_a_result_over_the_inline_cap_fails_with_a_clear_message(
    users: dict[str, httpx.Client],
) -> None:
    body = _run(users["ann"], f"SELECT repeat('x', 1000) AS s FROM {NUMBERS} LIMIT 30000")
    assert body["status"]["state"] == "FAILED"
    error = body["status"]["error"]
    assert error["error_code"] == "RESOURCE_EXHAUSTED"
    assert "25 MiB" in error["message"] and "byte_limit" in error["message"]
    assert "result" not in body


def test_old_results_are_released_and_their_statements_closed(
    users: dict[str, httpx.Client],
) -> None:
    ann = users["ann"]
    statement = f"SELECT n, repeat('x', 100) AS s FROM {NUMBERS} LIMIT 6000"  # ~0.65 MiB
    first = _run(ann, statement)
    second = _run(ann, statement)
    assert first["status"]["state"] == second["status"]["state"] == "SUCCEEDED"
    again = ann.get(f"/api/2.0/sql/statements/{first['statement_id']}").json()
    assert again["status"]["state"] == "CLOSED"
    assert "no longer kept" in again["status"]["error"]["message"]
    assert "result" not in again
    chunk = ann.get(f"/api/2.0/sql/statements/{first['statement_id']}/result/chunks/0")
    assert chunk.status_code == 400 and "CLOSED" in chunk.json()["message"]
    latest = ann.get(f"/api/2.0/sql/statements/{second['statement_id']}").json()
    assert latest["status"]["state"] == "SUCCEEDED"
    assert latest["result"]["row_count"] == 6000


def test_one_users_long_statements_do_not_starve_another(users: dict[str, httpx.Client]) -> None:
    ann, ben = users["ann"], users["ben"]
    started = []
    for _ in range(4):  # more than the three workers
        response = _submit(ann, HEAVY, wait_timeout="0s")
        assert response.status_code == 200, response.text
        started.append(response.json()["statement_id"])
    try:
        refused = _submit(ann, "SELECT 1", wait_timeout="0s")  # a fifth outstanding
        assert refused.status_code == 429
        assert refused.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
        assert "statements running or waiting" in refused.json()["message"]
        body = _run(ben, "SELECT 1 AS one")
        assert body["status"]["state"] == "SUCCEEDED"
        assert body["result"]["data_array"] == [["1"]]
        states = [
            ann.get(f"/api/2.0/sql/statements/{s}").json()["status"]["state"] for s in started
        ]
        assert all(state in ("PENDING", "RUNNING") for state in states), states
    finally:
        for statement_id in started:
            ann.post(f"/api/2.0/sql/statements/{statement_id}/cancel")
    deadline = time.monotonic() + WAIT
    for statement_id in started:
        while True:
            state = ann.get(f"/api/2.0/sql/statements/{statement_id}").json()["status"]["state"]
            if state not in ("PENDING", "RUNNING"):
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert state == "CANCELED"
    assert _run(ann, "SELECT 2 AS two")["status"]["state"] == "SUCCEEDED"


def test_killed_workers_are_replaced(users: dict[str, httpx.Client]) -> None:
    ann, ben = users["ann"], users["ben"]
    assert _run(ann, "SELECT 1 AS warm")["status"]["state"] == "SUCCEEDED"
    idle = _sql_workers()
    assert idle
    for pid in idle:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + WAIT
    while any(_state(pid) not in ("Z", "gone") for pid in idle):  # dead, not yet reaped
        assert time.monotonic() < deadline
        time.sleep(0.01)
    replaced = _run(ann, "SELECT 3 AS three")
    assert replaced["status"]["state"] == "SUCCEEDED", replaced["status"]["error"]["message"]
    assert replaced["result"]["data_array"] == [["3"]]
    # Workers killed in the middle of a statement: that statement fails, clearly.
    response = _submit(ann, HEAVY, wait_timeout="0s")
    statement_id = response.json()["statement_id"]
    baseline = {pid: _cpu_ticks(pid) for pid in _sql_workers()}
    deadline = time.monotonic() + WAIT
    while not any(_cpu_ticks(p) - baseline.setdefault(p, _cpu_ticks(p)) > 20 for p in baseline):
        assert time.monotonic() < deadline, "no worker started the statement"
        time.sleep(0.1)
        baseline.update({p: _cpu_ticks(p) for p in _sql_workers() if p not in baseline})
    victims = _sql_workers()
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    while True:
        body = ann.get(f"/api/2.0/sql/statements/{statement_id}").json()
        if body["status"]["state"] not in ("PENDING", "RUNNING"):
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert body["status"]["state"] == "FAILED"
    assert body["status"]["error"]["error_code"] == "RESOURCE_EXHAUSTED"
    assert "stopped unexpectedly" in body["status"]["error"]["message"]
    assert not set(victims) & set(_sql_workers())
    assert _run(ben, "SELECT 4 AS four")["result"]["data_array"] == [["4"]]
