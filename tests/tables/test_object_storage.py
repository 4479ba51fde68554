"""Every Delta table on an S3-compatible object store (``BASTION_TABLE_STORAGE=s3://...``).

The store is moto's S3 server, started on 127.0.0.1 by these tests (``tests/s3_server.py``
says why moto, and what it needed). Covered: the settings, commits that are never overwritten
(conditional put), two writer processes appending to one table at once, a writer and a whole
server killed with ``kill -9`` and replayed, a real server whose gateway rows, usage, spans,
audit, red-team results and user tables all live on the store and are read by governed SQL,
what an unprivileged user cannot reach, an outage, and start-up errors.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from bastion.bootstrap import initialize
from bastion.errors import InvalidRequest
from bastion.governance.securables import SecurableType
from bastion.platform import Platform
from bastion.query import runner
from bastion.query.catalog import DeltaSource
from bastion.query.workers import PoolConfig, WorkerPool
from bastion.settings import Settings
from bastion.tables import delta
from bastion.tables.storage import StorageUnavailable, TableStorage, storage_options
from bastion.tables.system import AUDIT
from bastion.tables.writer import WriterFlushFailed
from conftest import RunningServer, ServerThread, create_user, free_port, make_settings
from s3_server import (
    ACCESS_KEY,
    SECRET_KEY,
    Gate,
    S3Server,
    storage_env,
    storage_settings,
)
from upstream_stub import external_entity, start_stub

BUCKET = "bastion-tables"
CHILD = Path(__file__).with_name("writer_child.py")
PAYLOAD = "main.default.chat_payload"  # the writer child's table
WAIT = 120.0


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = S3Server()
    try:
        server.create_bucket(BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def no_credential_is_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Whatever a test does (outages and refusals included), the log never shows the secret."""
    caplog.set_level(logging.DEBUG)
    yield
    assert SECRET_KEY not in caplog.text


def fresh_root() -> str:
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"


def prefix_of(root: str) -> str:
    return root.split("/", 3)[3]


def options_for(s3: S3Server, tmp_path: Path) -> dict[str, str]:
    settings = Settings(home=tmp_path, **storage_settings(s3.endpoint, fresh_root()))
    return storage_options(settings)


# -- configuration ---------------------------------------------------------------------------


def test_settings_name_the_store_and_never_show_the_secret(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path, **storage_settings("http://127.0.0.1:9000", "s3://bkt/some/prefix/")
    )
    storage = TableStorage.from_settings(settings)
    assert storage.root == "s3://bkt/some/prefix" and storage.uses_object_store
    assert storage.location("main.default.t") == "s3://bkt/some/prefix/main/default/t"
    assert storage.options["aws_endpoint_url"] == "http://127.0.0.1:9000"
    assert storage.options["aws_access_key_id"] == ACCESS_KEY
    assert storage.options["aws_secret_access_key"] == SECRET_KEY
    assert storage.options["conditional_put"] == "etag"  # If-None-Match: * on every commit
    assert "aws_s3_allow_unsafe_rename" not in storage.options
    for shown in (repr(settings), str(settings), repr(storage), repr(AUDIT.spec(storage))):
        assert SECRET_KEY not in shown

    assert storage.is_managed("s3://bkt/some/prefix/main/default/t")
    for outside in (
        "s3://bkt/some/prefix",
        "s3://bkt/some/prefix-2/main/default/t",
        "s3://other/some/prefix/main/default/t",
        "s3://bkt/some/prefix/../other/t",
        str(tmp_path / "elsewhere"),
    ):
        assert not storage.is_managed(outside), outside
    # Tables made while the storage was local stay Bastion's own (DROP still deletes them).
    assert storage.is_managed(str(settings.warehouse_dir / "main" / "default" / "old"))


def test_the_usual_aws_variables_are_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "BASTION_TABLE_STORAGE": "s3://bkt/p",
        "AWS_ENDPOINT_URL": "http://minio:9000",
        "AWS_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "from-the-aws-variable",
        "AWS_ALLOW_HTTP": "true",
    }.items():
        monkeypatch.setenv(name, value)
    options = TableStorage.from_settings(Settings(home=tmp_path)).options
    assert options["aws_endpoint_url"] == "http://minio:9000"
    assert options["aws_region"] == "eu-west-1"
    assert options["aws_access_key_id"] == "AKIAEXAMPLE"
    assert options["aws_secret_access_key"] == "from-the-aws-variable"
    assert options["aws_allow_http"] == "true"
    monkeypatch.setenv("BASTION_S3_REGION", "us-west-2")  # Bastion's own name comes first
    assert TableStorage.from_settings(Settings(home=tmp_path)).options["aws_region"] == "us-west-2"


@pytest.mark.parametrize(
    "location", ["gs://bucket/tables", "s3://", "s3:///no-bucket", "http://host/x", "s3://b/p?x=1"]
)
def test_unsupported_locations_are_refused_in_one_line(tmp_path: Path, location: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        TableStorage.from_settings(Settings(home=tmp_path, table_storage=location))
    assert "\n" not in refused.value.message and "BASTION_TABLE_STORAGE" in refused.value.message


def test_an_unreachable_store_is_refused_at_start_up(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    settings = make_settings(
        tmp_path / "home", f"sqlite:///{tmp_path / 'm.db'}", **storage_settings(closed, "s3://x/y")
    )
    with pytest.raises(StorageUnavailable) as refused:
        Platform(settings)
    assert "cannot be reached" in refused.value.message and "\n" not in refused.value.message
    assert SECRET_KEY not in refused.value.message


def test_a_missing_bucket_is_refused_at_start_up(s3: S3Server, tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "home",
        f"sqlite:///{tmp_path / 'm.db'}",
        **storage_settings(s3.endpoint, "s3://no-such-bucket/tables"),
    )
    with pytest.raises(StorageUnavailable) as refused:
        Platform(settings)
    message = refused.value.message
    assert "s3://no-such-bucket/tables cannot be reached" in message, message
    assert "\n" not in message and SECRET_KEY not in message


def test_credentials_in_the_location_are_refused_without_echoing_them(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest) as refused:
        TableStorage.from_settings(
            Settings(home=tmp_path, table_storage=f"s3://{ACCESS_KEY}:{SECRET_KEY}@bkt/p")
        )
    message = refused.value.message
    assert "BASTION_S3_ACCESS_KEY_ID" in message
    assert SECRET_KEY not in message and ACCESS_KEY not in message


# -- Delta commits on the store ----------------------------------------------------------------


def test_a_commit_is_never_overwritten_by_a_writer_with_a_stale_view(
    s3: S3Server, tmp_path: Path
) -> None:
    """Two replicas both at version 0 commit: the second finds version 1 taken (the store
    answers its If-None-Match put with 412), re-reads the log and lands at version 2."""
    options = options_for(s3, tmp_path)
    root = fresh_root()
    uri = f"{root}/main/default/t"
    schema = pa.schema([("id", pa.string())])
    delta.create_table_if_missing(uri, schema, storage_options=options)
    first = delta.open_table(uri, storage_options=options)
    second = delta.open_table(uri, storage_options=options)
    assert first is not None and second is not None
    assert delta.append(first, pa.table({"id": ["one"]}), app_id="replica-1", version=1) == 1
    assert delta.append(second, pa.table({"id": ["two"]}), app_id="replica-2", version=1) == 2

    rows = delta.read_table(uri, storage_options=options)["id"].to_pylist()
    assert sorted(rows) == ["one", "two"]
    log = f"{prefix_of(root)}/main/default/t/_delta_log/"
    commit_1 = s3.client().get_object(Bucket=BUCKET, Key=f"{log}{1:020d}.json")["Body"].read()
    assert b"replica-1" in commit_1 and b"replica-2" not in commit_1


def _commits_by_writer(s3: S3Server, table_prefix: str) -> list[str]:
    """The application id of each commit in the table's log, in version order."""
    client = s3.client()
    writers = []
    for key in sorted(
        k for k in s3.keys(BUCKET, f"{table_prefix}/_delta_log/") if k.endswith(".json")
    ):
        for line in client.get_object(Bucket=BUCKET, Key=key)["Body"].read().splitlines():
            action = json.loads(line)
            if "txn" in action:
                writers.append(action["txn"]["appId"])
    return writers


def test_two_writer_processes_append_at_once_and_every_row_lands_once(
    s3: S3Server, tmp_path: Path
) -> None:
    options = options_for(s3, tmp_path)
    root = fresh_root()
    uri = f"{root}/main/default/chat_payload"
    env = {**os.environ, "WRITER_CHILD_STORAGE_OPTIONS": json.dumps(options)}
    start = tmp_path / "start"
    children = [
        subprocess.Popen(
            [
                sys.executable,
                str(CHILD),
                "append",
                str(tmp_path / f"wal-{n}"),
                uri,
                "--rows",
                "1000",
                "--commit-every",
                "50",
                "--prefix",
                f"replica{n}",
                "--start-file",
                str(start),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in (1, 2)
    ]
    start.touch()
    acknowledged: list[str] = []
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
        acknowledged += out.split()
    assert len(acknowledged) == 2000

    keys = collections.Counter(
        delta.read_table(uri, columns=["request_id"], storage_options=options)[
            "request_id"
        ].to_pylist()
    )
    assert set(keys) == set(acknowledged)
    assert [k for k, n in keys.items() if n > 1] == []
    # Both writers' commits are in the one log, interleaved: they really raced.
    writers = _commits_by_writer(s3, f"{prefix_of(root)}/main/default/chat_payload")
    assert len(set(writers)) == 2
    switches = sum(1 for a, b in itertools.pairwise(writers) if a != b)
    assert switches >= 2, writers


def _child(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHILD), *args], capture_output=True, text=True, timeout=300, env=env
    )


def test_a_writer_killed_with_rows_in_its_wal_replays_them_to_the_store_once(
    s3: S3Server, tmp_path: Path
) -> None:
    options = options_for(s3, tmp_path)
    uri = f"{fresh_root()}/main/default/chat_payload"
    wal_dir = str(tmp_path / "wal")
    env = {**os.environ, "WRITER_CHILD_STORAGE_OPTIONS": json.dumps(options)}
    child = subprocess.Popen(
        [sys.executable, str(CHILD), "append", wal_dir, uri, "--flush-rows", "150"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert child.stdout is not None
    acknowledged: list[str] = []
    for line in child.stdout:
        acknowledged.append(line.decode().strip())
        if len(acknowledged) >= 1500:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    acknowledged += child.stdout.read().decode().split("\n")[:-1]  # whole lines only
    child.stdout.close()

    def keys() -> collections.Counter[str]:
        if delta.open_table(uri, storage_options=options) is None:
            return collections.Counter()
        table = delta.read_table(uri, columns=["request_id"], storage_options=options)
        return collections.Counter(table["request_id"].to_pylist())

    assert set(acknowledged) - set(keys()), "the kill should leave acknowledged rows unflushed"
    replay = _child("replay", wal_dir, uri, env=env)
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout)["pending"] == 0
    after = keys()
    assert set(acknowledged) <= set(after)
    assert [k for k, n in after.items() if n > 1] == []

    # A crash between the Delta commit and the WAL's retirement is not committed twice.
    crashed = _child("crash-after-commit", str(tmp_path / "wal2"), uri, "--rows", "300", env=env)
    assert crashed.returncode == 9, crashed.stderr
    committed = sum(keys().values())
    replay = _child("replay", str(tmp_path / "wal2"), uri, env=env)
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout)["written"] == 0
    assert sum(keys().values()) == committed


# -- a server whose tables are all on the store -----------------------------------------------


@pytest.fixture(scope="module")
def on_s3(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("on-s3")
    settings = make_settings(
        home / "home",
        f"sqlite:///{home / 'metastore.db'}",
        writer_flush_interval_s=0.2,
        **storage_settings(s3.endpoint, fresh_root()),
    )
    platform = Platform(settings)
    initialize(platform)
    try:
        with ServerThread(platform) as url:
            yield RunningServer(url=url, platform=platform)
    finally:
        platform.close()


def run_sql(client: httpx.Client, statement: str) -> dict[str, Any]:
    """A statement over the Statement Execution API, waited for; its final body."""
    response = client.post(
        "/api/2.0/sql/statements", json={"statement": statement, "wait_timeout": "30s"}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    deadline = time.monotonic() + WAIT
    while body["status"]["state"] in ("PENDING", "RUNNING"):
        assert time.monotonic() < deadline, body
        time.sleep(0.1)
        body = client.get(f"/api/2.0/sql/statements/{body['statement_id']}").json()
    return body


def rows_of(client: httpx.Client, statement: str) -> list[list[Any]]:
    body = run_sql(client, statement)
    assert body["status"]["state"] == "SUCCEEDED", body
    return list(body.get("result", {}).get("data_array") or [])


def keys_under(s3: S3Server, storage: TableStorage, full_name: str) -> list[str]:
    return s3.keys(BUCKET, prefix_of(storage.location(full_name)) + "/")


def test_gateway_rows_usage_spans_and_audit_are_on_the_store_and_sql_reads_them(
    s3: S3Server, on_s3: RunningServer
) -> None:
    platform = on_s3.platform
    storage = platform.table_storage
    stub = start_stub("hello from the stub")
    try:
        with on_s3.admin() as admin:
            created = admin.post(
                "/api/2.0/serving-endpoints",
                json={"name": "chat", "config": {"served_entities": [external_entity(stub)]}},
            )
            assert created.status_code == 200, created.text
            for n in range(5):
                reply = admin.post(
                    "/serving-endpoints/chat/invocations",
                    json={
                        "messages": [{"role": "user", "content": "hi"}],
                        "client_request_id": f"s3-{n}",
                    },
                )
                assert reply.status_code == 200, reply.text
            platform.writer.flush()

            payload = rows_of(
                admin,
                "SELECT client_request_id, requester FROM main.default.chat_payload "
                "ORDER BY client_request_id",
            )
            assert payload == [[f"s3-{n}", "admin"] for n in range(5)]
            (usage,) = rows_of(
                admin,
                "SELECT count(*) FROM system.serving.endpoint_usage WHERE endpoint_name = 'chat'",
            )
            assert int(usage[0]) == 5
            # The tracer hands spans to the writer in batches (every 250 ms): wait for them.
            deadline = time.monotonic() + 30
            while True:
                platform.writer.flush()
                spans = rows_of(admin, "SELECT count(*) FROM system.tracing.spans")
                if int(spans[0][0]) > 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.25)
            assert int(spans[0][0]) > 0
            # The audit trail: the admin API reads it from the store, and so does SQL.
            events = admin.get("/api/2.0/bastion/audit", params={"limit": 1000})
            assert events.status_code == 200, events.text
            sql_events = {
                row[0]
                for row in rows_of(admin, "SELECT DISTINCT action_name FROM system.access.audit")
            }
            api_events = {e["action_name"] for e in events.json()["events"]}
            assert "checkPrivilege" in api_events and api_events <= sql_events
    finally:
        stub.shutdown()
        stub.server_close()

    for table in (
        "main.default.chat_payload",
        "system.serving.endpoint_usage",
        "system.tracing.spans",
        AUDIT.full_name,
    ):
        keys = keys_under(s3, storage, table)
        assert any("/_delta_log/" in k for k in keys), table
        assert any(k.endswith(".parquet") for k in keys), table
    # Nothing but the write-ahead log is kept locally.
    assert list(platform.settings.warehouse_dir.rglob("_delta_log")) == []
    assert (platform.settings.home / "wal").is_dir()


def test_user_tables_are_created_written_read_and_dropped_on_the_store(
    s3: S3Server, on_s3: RunningServer
) -> None:
    storage = on_s3.platform.table_storage
    _, token = create_user(on_s3, "ann@example.com")
    with on_s3.client(token) as ann:
        for statement in (
            "CREATE TABLE main.default.notes (id INT, body STRING)",
            "INSERT INTO main.default.notes VALUES (1, 'one'), (2, 'two')",
            "INSERT INTO main.default.notes SELECT id + 10, upper(body) FROM main.default.notes",
            "CREATE TABLE main.default.notes_copy AS SELECT * FROM main.default.notes WHERE id > 1",
        ):
            assert run_sql(ann, statement)["status"]["state"] == "SUCCEEDED", statement
        assert rows_of(ann, "SELECT id, body FROM main.default.notes ORDER BY id") == [
            ["1", "one"],
            ["2", "two"],
            ["11", "ONE"],
            ["12", "TWO"],
        ]
        assert rows_of(ann, "SELECT count(*) FROM main.default.notes_copy") == [["3"]]
        history = rows_of(ann, "DESCRIBE HISTORY main.default.notes")
        assert len(history) == 3  # create + two appends
        info = ann.get("/api/2.1/unity-catalog/tables/main.default.notes").json()
        assert info["storage_location"] == storage.location("main.default.notes")
        assert keys_under(s3, storage, "main.default.notes")

        # A table made with the REST API lives there too.
        created = ann.post(
            "/api/2.1/unity-catalog/tables",
            json={
                "name": "rest_made",
                "catalog_name": "main",
                "schema_name": "default",
                "columns": [{"name": "x", "type_text": "bigint", "type_name": "LONG"}],
            },
        )
        assert created.status_code == 200, created.text
        assert created.json()["storage_location"] == storage.location("main.default.rest_made")
        assert rows_of(ann, "SELECT count(*) FROM main.default.rest_made") == [["0"]]

        assert run_sql(ann, "DROP TABLE main.default.notes")["status"]["state"] == "SUCCEEDED"
        deleted = ann.delete("/api/2.1/unity-catalog/tables/main.default.rest_made")
        assert deleted.status_code == 200, deleted.text
    assert keys_under(s3, storage, "main.default.notes") == []
    assert keys_under(s3, storage, "main.default.rest_made") == []
    assert keys_under(s3, storage, "main.default.notes_copy")  # a neighbour is untouched


def test_red_team_results_are_on_the_store(s3: S3Server, on_s3: RunningServer) -> None:
    stub = start_stub("I cannot help with that.")
    try:
        with on_s3.admin() as admin:
            created = admin.post(
                "/api/2.0/serving-endpoints",
                json={"name": "target", "config": {"served_entities": [external_entity(stub)]}},
            )
            assert created.status_code == 200, created.text
            started = admin.post(
                "/api/2.0/redteam/scans",
                json={
                    "endpoint": "target",
                    "risk_categories": "violence",
                    "strategies": "base64",
                    "num_objectives": 2,
                    "judge": "refusal",
                },
            )
            assert started.status_code == 200, started.text
            scan_id = started.json()["scan_id"]
            deadline = time.monotonic() + WAIT
            while (scan := admin.get(f"/api/2.0/redteam/scans/{scan_id}").json())[
                "status"
            ] == "running":
                assert time.monotonic() < deadline, scan
                time.sleep(0.2)
            assert scan["status"] == "completed", scan
            results = admin.get(f"/api/2.0/redteam/scans/{scan_id}/results").json()["results"]
            assert len(results) == scan["total"] > 0
            (count,) = rows_of(
                admin, f"SELECT count(*) FROM system.redteam.results WHERE scan_id = '{scan_id}'"
            )
            assert int(count[0]) == len(results)
    finally:
        stub.shutdown()
        stub.server_close()
    storage = on_s3.platform.table_storage
    for table in ("system.redteam.results", "system.redteam.scans"):
        assert any(k.endswith(".parquet") for k in keys_under(s3, storage, table)), table


EVERY_KIND = {  # table → the schema a reader needs USE SCHEMA on
    "main.default.granted_payload": "main.default",  # inference payload
    "system.serving.endpoint_usage": "system.serving",  # usage
    "system.serving.served_entities": "system.serving",
    "system.tracing.spans": "system.tracing",  # spans
    AUDIT.full_name: "system.access",  # audit
    "system.redteam.scans": "system.redteam",  # red team
    "system.redteam.results": "system.redteam",
    "main.default.granted_notes": "main.default",  # a user's table
}


def test_every_table_kind_is_read_from_the_store_by_a_granted_user_only(
    s3: S3Server, on_s3: RunningServer
) -> None:
    """Each kind of table, on the store, read with governed SQL over HTTP by an ordinary user
    once granted SELECT; a user without grants is refused every one of them."""
    storage = on_s3.platform.table_storage
    stub = start_stub("granted reply")
    try:
        with on_s3.admin() as admin:
            created = admin.post(
                "/api/2.0/serving-endpoints",
                json={"name": "granted", "config": {"served_entities": [external_entity(stub)]}},
            )
            assert created.status_code == 200, created.text
            for _ in range(3):
                reply = admin.post(
                    "/serving-endpoints/granted/invocations",
                    json={"messages": [{"role": "user", "content": "hi"}]},
                )
                assert reply.status_code == 200, reply.text
            for statement in (
                "CREATE TABLE main.default.granted_notes (id INT)",
                "INSERT INTO main.default.granted_notes VALUES (1), (2)",
            ):
                assert run_sql(admin, statement)["status"]["state"] == "SUCCEEDED", statement
            on_s3.platform.writer.flush()
            counts = {
                table: int(rows_of(admin, f"SELECT count(*) FROM {table}")[0][0])
                for table in EVERY_KIND
            }
            for table, count in counts.items():
                if not table.startswith("system.redteam."):  # no scan need have run yet
                    assert count > 0, table
                # Its Delta log is on the store, and nowhere on local disk.
                assert any("/_delta_log/" in k for k in keys_under(s3, storage, table)), table

            _, reader_token = create_user(on_s3, "reader@example.com")
            _, nobody_token = create_user(on_s3, "nobody@example.com")
            grants = {"GRANT USE CATALOG ON CATALOG system TO `reader@example.com`"}
            for table, schema in EVERY_KIND.items():
                grants.add(f"GRANT USE SCHEMA ON SCHEMA {schema} TO `reader@example.com`")
                grants.add(f"GRANT SELECT ON TABLE {table} TO `reader@example.com`")
            for statement in sorted(grants):
                assert run_sql(admin, statement)["status"]["state"] == "SUCCEEDED", statement
    finally:
        stub.shutdown()
        stub.server_close()

    with on_s3.client(reader_token) as reader, on_s3.client(nobody_token) as nobody:
        for table, count in counts.items():
            (got,) = rows_of(reader, f"SELECT count(*) FROM {table}")
            assert int(got[0]) >= count, table  # the audit only grows
            refused = run_sql(nobody, f"SELECT count(*) FROM {table}")
            assert refused["status"]["state"] == "FAILED", (table, refused)
            assert refused["status"]["error"]["bastion_error_code"] == "PERMISSION_DENIED", refused
        # The location a reader is shown is the table's place in the store, no credential.
        info = reader.get("/api/2.1/unity-catalog/tables/main.default.granted_notes")
        assert info.status_code == 200, info.text
        assert info.json()["storage_location"] == storage.location("main.default.granted_notes")
        detail = json.dumps(run_sql(reader, "DESCRIBE DETAIL main.default.granted_notes"))
        for secret in (SECRET_KEY, ACCESS_KEY, s3.endpoint):
            assert secret not in info.text and secret not in detail


def test_an_ordinary_user_cannot_point_at_or_read_other_locations(
    s3: S3Server, on_s3: RunningServer
) -> None:
    """Locations are the server's: a user can neither give one nor read by path."""
    storage = on_s3.platform.table_storage
    audit = storage.location(AUDIT.full_name)
    elsewhere = f"s3://{BUCKET}/someone-else/secret"
    _, token = create_user(on_s3, "mallory@example.com")
    with on_s3.client(token) as mallory:
        for location in (audit, elsewhere):
            refused = mallory.post(
                "/api/2.1/unity-catalog/tables",
                json={
                    "name": "mine",
                    "catalog_name": "main",
                    "schema_name": "default",
                    "columns": [{"name": "x", "type_text": "int", "type_name": "INT"}],
                    "storage_location": location,
                },
            )
            assert refused.status_code == 400, refused.text
            assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        for statement in (
            f"CREATE TABLE main.default.mine (x INT) LOCATION '{audit}'",
            f"CREATE TABLE main.default.mine LOCATION '{elsewhere}' AS SELECT 1 AS x",
            f"SELECT * FROM read_parquet('{audit}/*.parquet')",
            f"SELECT * FROM delta_scan('{audit}')",
            f"SELECT * FROM '{audit}/*.parquet'",
            f"SELECT * FROM parquet.`{audit}`",
            f"SELECT * FROM delta.`{audit}`",
            "SELECT * FROM system.access.audit",
            f"COPY (SELECT 1) TO '{elsewhere}/x.parquet'",
        ):
            body = run_sql(mallory, statement)
            assert body["status"]["state"] == "FAILED", (statement, body)
            assert "result" not in body or not body["result"].get("data_array"), statement
            assert SECRET_KEY not in json.dumps(body)
        tables = on_s3.platform.governance.list_securables(SecurableType.TABLE)
        names = {i.full_name for i in tables}
        assert "main.default.mine" not in names
    assert s3.keys(BUCKET, "someone-else/") == []


# -- an outage of the store ---------------------------------------------------------------------


def test_an_outage_keeps_rows_in_the_wal_answers_503_and_heals(
    s3: S3Server, tmp_path: Path
) -> None:
    gate = Gate(s3.port)
    stub = start_stub("still answering")
    settings = make_settings(
        tmp_path / "home",
        f"sqlite:///{tmp_path / 'metastore.db'}",
        writer_flush_interval_s=0.1,
        **storage_settings(gate.endpoint, fresh_root(), s3_timeout_s=2, s3_connect_timeout_s=1),
    )
    platform = Platform(settings)
    initialize(platform)
    try:
        with ServerThread(platform) as url:
            server = RunningServer(url=url, platform=platform)
            with server.admin() as admin:
                created = admin.post(
                    "/api/2.0/serving-endpoints",
                    json={"name": "chat", "config": {"served_entities": [external_entity(stub)]}},
                )
                assert created.status_code == 200, created.text

                def ask(n: int) -> None:
                    reply = admin.post(
                        "/serving-endpoints/chat/invocations",
                        json={
                            "messages": [{"role": "user", "content": "hi"}],
                            "client_request_id": f"outage-{n}",
                        },
                    )
                    assert reply.status_code == 200, reply.text

                ask(0)
                platform.writer.flush()
                gate.close()
                for n in range(1, 6):
                    ask(n)  # answered: the gateway never waits for the store
                with pytest.raises(WriterFlushFailed):
                    platform.writer.flush()
                stats = platform.writer.stats().tables["main.default.chat_payload"]
                assert stats.pending >= 5 and stats.commit_errors >= 1
                wal = settings.home / "wal" / "tables" / "main.default.chat_payload"
                assert any(p.suffix == ".wal" and p.stat().st_size for p in wal.iterdir())

                body = run_sql(admin, "SELECT count(*) FROM main.default.chat_payload")
                assert body["status"]["state"] == "FAILED", body
                assert body["status"]["error"]["error_code"] == "TEMPORARILY_UNAVAILABLE", body
                audit = admin.get("/api/2.0/bastion/audit")
                assert audit.status_code == 503, audit.text
                assert audit.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"

                gate.open()
                # The writer's own retries (with backoff) commit the kept rows.
                deadline = time.monotonic() + WAIT
                while platform.writer.stats().tables["main.default.chat_payload"].pending:
                    assert time.monotonic() < deadline, platform.writer.stats()
                    time.sleep(0.2)
                ids = rows_of(
                    admin,
                    "SELECT client_request_id FROM main.default.chat_payload "
                    "ORDER BY client_request_id",
                )
                assert ids == [[f"outage-{n}"] for n in range(6)]
    finally:
        gate.open()
        platform.close()
        gate.stop()
        stub.shutdown()
        stub.server_close()


def test_a_sql_worker_that_cannot_reach_the_store_answers_503_without_its_address(
    s3: S3Server, tmp_path: Path
) -> None:
    """The store goes away between authorization (the server's snapshot) and the worker's
    read: the statement fails as unavailable, naming no endpoint or bucket, and heals."""
    gate = Gate(s3.port)
    settings = Settings(
        home=tmp_path,
        **storage_settings(gate.endpoint, fresh_root(), s3_timeout_s=2, s3_connect_timeout_s=1),
    )
    storage = TableStorage.from_settings(settings)
    uri = storage.location("main.default.t")
    table = delta.create_table_if_missing(
        uri, pa.schema([("id", pa.int64())]), storage_options=storage.options
    )
    delta.append(table, pa.table({"id": pa.array(range(100), pa.int64())}))
    source = DeltaSource.of(table, uri)
    pool = WorkerPool(PoolConfig(workers=1, per_principal=1, storage_options=storage.options))

    def count() -> Any:
        limits = runner.Limits(
            pool=pool,
            principal=1,
            deadline=time.monotonic() + 60,
            timeout_s=60.0,
            native_scan_bytes=0,
        )
        rows, _ = runner.run(
            "SELECT count(*) AS n FROM t", {"t": source}, {}, limits, max_rows=None
        )
        return rows.to_pylist()

    try:
        gate.close()
        with pytest.raises(StorageUnavailable) as refused:
            count()
        assert refused.value.status_code == 503
        for detail in (gate.endpoint, BUCKET, SECRET_KEY):
            assert detail not in refused.value.message
        gate.open()
        assert count() == [{"n": 100}]
    finally:
        pool.close()
        gate.stop()


# -- bastion up: start-up errors, and kill -9 of the whole server --------------------------------


def _up(home: Path, port: int, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bastion.cli.main", "up", "--port", str(port), "--no-default-model"],
        env={**os.environ, "BASTION_HOME": str(home), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize(
    "table_storage, expected",
    [("s3://bastion-tables/x", "cannot be reached"), ("gs://bucket/x", "is not supported")],
)
def test_bastion_up_reports_bad_storage_in_one_line(
    tmp_path: Path, table_storage: str, expected: str
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    process = _up(tmp_path / "home", free_port(), storage_env(closed, table_storage))
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 1, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and expected in lines[0], out
    assert "Traceback" not in out and SECRET_KEY not in out


def test_bastion_up_killed_under_load_replays_every_answered_row_to_the_store(
    s3: S3Server, tmp_path: Path
) -> None:
    home, port = tmp_path / "home", free_port()
    url = f"http://127.0.0.1:{port}"
    root = fresh_root()
    token = "bstp_" + "e" * 40
    env = {
        **storage_env(s3.endpoint, root),
        "BASTION_ADMIN_TOKEN": token,
        # Nothing reaches the store on its own during the run: the kill finds rows in the WAL.
        "BASTION_WRITER_FLUSH_INTERVAL_S": "3600",
        "BASTION_WRITER_FLUSH_ROWS": "1000000",
    }
    stub = start_stub("ok")
    server = _up(home, port, env)
    answered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    auth = {"Authorization": f"Bearer {token}"}

    def ready() -> None:
        deadline = time.monotonic() + WAIT
        while True:
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)

    def load(worker: int) -> None:
        with httpx.Client(base_url=url, headers=auth, timeout=10) as client:
            n = 0
            while not stop.is_set():
                cid = f"w{worker}-{n}"
                n += 1
                try:
                    reply = client.post(
                        "/serving-endpoints/crashy/invocations",
                        json={
                            "messages": [{"role": "user", "content": "hi"}],
                            "client_request_id": cid,
                        },
                    )
                except httpx.HTTPError:
                    continue  # the server died under this request: no answer, no claim
                if reply.status_code == 200:
                    with lock:
                        answered.append(cid)

    options = options_for(s3, tmp_path)
    uri = f"{root}/main/default/crashy_payload"

    def rows() -> collections.Counter[str]:
        if delta.open_table(uri, storage_options=options) is None:
            return collections.Counter()
        table = delta.read_table(uri, columns=["client_request_id"], storage_options=options)
        return collections.Counter(table["client_request_id"].to_pylist())

    try:
        ready()
        created = httpx.post(
            f"{url}/api/2.0/serving-endpoints",
            json={"name": "crashy", "config": {"served_entities": [external_entity(stub)]}},
            headers=auth,
            timeout=30,
        )
        assert created.status_code == 200, created.text
        threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + WAIT
        while len(answered) < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
        stop.set()
        for thread in threads:
            thread.join()
        acknowledged = set(answered)
        assert len(acknowledged) >= 50
        assert sum(rows().values()) < len(acknowledged), "rows reached the store before the kill"

        server = _up(home, port, env)
        ready()
        server.send_signal(signal.SIGINT)  # a clean stop commits everything the WAL holds
        server.communicate(timeout=60)
        after = rows()
        assert acknowledged <= set(after)
        assert [cid for cid, n in after.items() if n > 1] == []
    finally:
        stop.set()
        if server.poll() is None:
            server.kill()
            server.communicate(timeout=30)
        stub.shutdown()
        stub.server_close()
