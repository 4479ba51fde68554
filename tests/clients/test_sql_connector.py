"""databricks-sql-connector, unchanged, on its Statement Execution backend (``use_sea=True``).

The seed's own code path: ``from databricks import sql`` → the payload table → pandas. The
connector opens a session, asks for ``EXTERNAL_LINKS`` + ``ARROW_STREAM`` with LZ4, fetches
the presigned chunk links without credentials, and closes the statement and the session.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from databricks import sql

from clients.conftest import USER, Deployment

UC = "/api/2.1/unity-catalog"
#: 1 … 10,000, from nothing but VALUES and joins (table functions are not allowed).
NUMBERS = (
    "(SELECT a.x * 1000 + b.x * 100 + c.x * 10 + d.x + 1 AS n FROM "
    + ", ".join(
        f"(SELECT * FROM VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9) AS t(x)) {alias}"
        for alias in "abcd"
    )
    + ")"
)


@pytest.fixture(scope="module")
def connect(deployment: Deployment) -> Iterator[Any]:
    """``sql.connect`` as the test user, who may read the assistant's payload table."""
    client = openai.OpenAI(
        base_url=f"{deployment.server.url}/serving-endpoints", api_key=deployment.token
    )
    for question in ("When does the shrine open?", "Where is the station?"):
        client.chat.completions.create(
            model=deployment.openai_endpoint, messages=[{"role": "user", "content": question}]
        )
    deployment.server.platform.writer.flush()
    with deployment.server.admin() as admin:
        grant = {"changes": [{"principal": USER, "add": ["SELECT"]}]}
        table = f"main.default.{deployment.openai_endpoint}_payload"
        assert admin.patch(f"{UC}/permissions/table/{table}", json=grant).is_success
    scheme_host, port = deployment.server.url.rsplit(":", 1)

    def connect(**extra: Any) -> Any:
        return sql.connect(
            server_hostname=scheme_host,  # "http://127.0.0.1": plain HTTP works with SEA
            port=int(port),
            http_path="/sql/1.0/warehouses/bastion",
            access_token=deployment.token,
            use_sea=True,
            # The connector's feature-flag request ignores `port` (it goes to :80 or :443);
            # on a non-default port it would only time out, so it is switched off here.
            enable_telemetry=False,
            **extra,
        )

    yield connect


@pytest.mark.compat(
    "databricks-sql-connector",
    "`use_sea=True`: the seed's query → `fetchall_arrow().to_pandas()` (EXTERNAL_LINKS, "
    "ARROW_STREAM, LZ4)",
)
def test_the_seed_query_into_pandas(deployment: Deployment, connect: Any) -> None:
    endpoint = deployment.openai_endpoint
    with connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"SELECT * FROM main.default.{endpoint}_payload LIMIT 1000")
        frame = cursor.fetchall_arrow().to_pandas()
    assert len(frame) >= 2
    assert set(frame["requester"]) == {USER}
    assert any("When does the shrine open?" in r for r in frame["request"])
    assert str(frame["status_code"].dtype) == "int32"
    assert str(frame["input_tokens"].dtype) == "int64"
    assert str(frame["stream"].dtype) == "bool"
    assert str(frame["request_time"].dtype).startswith("datetime64")
    assert frame["request_time"].dt.tz is not None


@pytest.mark.compat(
    "databricks-sql-connector", "`use_sea=True`: a result of many chunks, parameters, types"
)
def test_many_chunks_parameters_and_types(connect: Any) -> None:
    with connect() as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT n, CAST(n AS STRING) AS s, CAST(n AS DECIMAL(12, 2)) AS d, "
            f"n % 2 = 0 AS even FROM {NUMBERS} WHERE n <= :top ORDER BY n",
            {"top": 5000},
        )
        rows = cursor.fetchall()
        description = cursor.description
    assert len(rows) == 5000  # past 16 KiB per chunk: several presigned links were fetched
    assert [r.n for r in rows[:3]] == [1, 2, 3] and rows[-1].n == 5000
    assert rows[9].s == "10" and rows[9].even is True
    assert rows[1].d == Decimal("2.00") and str(rows[1].d) == "2.00"
    assert [d[1] for d in description] == ["int", "string", "decimal", "boolean"]


@pytest.mark.compat(
    "databricks-sql-connector", "`use_sea=True`: JSON_ARRAY INLINE (`use_cloud_fetch=False`)"
)
def test_inline_json_results(connect: Any) -> None:
    with connect(use_cloud_fetch=False) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT 1 AS one, 'x' AS s")
        assert [tuple(r) for r in cursor.fetchall()] == [(1, "x")]


@pytest.mark.compat(
    "databricks-sql-connector",
    "default (Thrift) backend",
    unsupported="Bastion implements the Statement Execution API, not the Thrift HiveServer2 "
    "protocol; connect with `use_sea=True`",
)
def test_thrift_backend_fails_cleanly(deployment: Deployment) -> None:
    scheme_host, port = deployment.server.url.rsplit(":", 1)
    with pytest.raises(Exception):  # noqa: B017 - what fails first depends on the transport
        sql.connect(
            server_hostname=scheme_host.removeprefix("http://"),
            port=int(port),
            http_path="/sql/1.0/warehouses/bastion",
            access_token=deployment.token,
            enable_telemetry=False,
            _retry_stop_after_attempts_count=1,
        )


def test_chunk_links_are_presigned_bound_and_expiring(deployment: Deployment) -> None:
    """The links need no credential, but only the genuine one works: not another chunk's,
    not a changed expiry, not after the statement is closed."""
    auth = {"Authorization": f"Bearer {deployment.token}"}
    with httpx.Client(base_url=deployment.server.url, headers=auth, timeout=30) as client:
        reply = client.post(
            "/api/2.0/sql/statements",
            json={
                "statement": f"SELECT n FROM {NUMBERS}",
                "disposition": "EXTERNAL_LINKS",
                "format": "ARROW_STREAM",
                "wait_timeout": "30s",
            },
        ).json()
        assert reply["status"]["state"] == "SUCCEEDED", reply
        assert reply["manifest"]["total_chunk_count"] >= 2
        link = reply["result"]["external_links"][0]
        statement_id = reply["statement_id"]
    url = httpx.URL(link["external_link"])
    with httpx.Client(timeout=30) as anonymous:  # no Authorization header, as the connector
        assert anonymous.get(url).status_code == 200
        other_chunk = url.copy_with(path=url.path.replace("/chunks/0/", "/chunks/1/"))
        assert anonymous.get(other_chunk).status_code == 403
        later = url.copy_merge_params({"expires": str(int(url.params["expires"]) + 60)})
        assert anonymous.get(later).status_code == 403
        expired = url.copy_merge_params({"expires": "1"})
        assert anonymous.get(expired).status_code == 403
    with httpx.Client(base_url=deployment.server.url, headers=auth, timeout=30) as client:
        assert client.delete(f"/api/2.0/sql/statements/{statement_id}").status_code == 200
        closed = client.get(f"/api/2.0/sql/statements/{statement_id}").json()
        assert closed["status"]["state"] == "CLOSED"
    with httpx.Client(timeout=30) as anonymous:
        assert anonymous.get(url).status_code == 400  # the result is gone


def test_sessions_belong_to_their_creator(deployment: Deployment) -> None:
    from conftest import create_user

    _, other = create_user(deployment.server, "sessions-other@example.com")
    mine = {"Authorization": f"Bearer {deployment.token}"}
    theirs = {"Authorization": f"Bearer {other}"}
    with httpx.Client(base_url=deployment.server.url, timeout=30) as client:
        session = client.post(
            "/api/2.0/sql/sessions", json={"warehouse_id": "w"}, headers=mine
        ).json()["session_id"]
        statement = {"statement": "SELECT 1 AS one", "session_id": session, "wait_timeout": "10s"}
        used = client.post("/api/2.0/sql/statements", json=statement, headers=mine).json()
        assert used["status"]["state"] == "SUCCEEDED"
        stolen = client.post("/api/2.0/sql/statements", json=statement, headers=theirs)
        assert (
            stolen.status_code == 404 and stolen.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
        )
        assert client.delete(f"/api/2.0/sql/sessions/{session}", headers=theirs).status_code == 404
        assert client.delete(f"/api/2.0/sql/sessions/{session}", headers=mine).status_code == 200
        closed = client.post("/api/2.0/sql/statements", json=statement, headers=mine)
        assert closed.status_code == 404
        elsewhere = client.post(
            "/api/2.0/sql/sessions", json={"catalog": "hr", "schema": "x"}, headers=mine
        )
        assert elsewhere.status_code == 400 and "main.default" in elsewhere.json()["message"]
