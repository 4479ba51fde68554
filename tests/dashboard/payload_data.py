"""Payload-table rows for dashboard tests: real Delta tables, written through governed SQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

PAYLOAD_DDL = (
    "CREATE TABLE {name} (request_id STRING, client_request_id STRING, request_date DATE, "
    "request_time TIMESTAMP, status_code INT, execution_duration_ms BIGINT, "
    "total_duration_ms BIGINT, request STRING, response STRING, served_entity_name STRING, "
    "model_name STRING, model_version STRING, endpoint_name STRING, requester STRING, "
    "api STRING, stream BOOLEAN, input_tokens BIGINT, output_tokens BIGINT, "
    "environment STRING, scan_type STRING, scan_id STRING, trace_id STRING)"
)


def sql(client: httpx.Client, statement: str) -> dict:  # type: ignore[type-arg]
    response = client.post(
        "/api/2.0/sql/statements",
        json={"statement": statement, "warehouse_id": "default", "wait_timeout": "50s"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"]["state"] == "SUCCEEDED", body
    return body


def create_payload_table(
    client: httpx.Client, name: str, endpoint: str, rows: int, now: datetime | None = None
) -> None:
    """``rows`` rows over the last 24 hours and 24 before: a few errors, a slow outlier, a
    row with nulls (as a half-ingested table has), two requesters, scan types."""
    now = now or datetime.now(UTC)
    sql(client, PAYLOAD_DDL.format(name=name))
    values = []
    for n in range(rows):
        when = now - timedelta(minutes=(n * 47) % (48 * 60))
        status = 500 if n % 10 == 3 else 200
        latency = 9000 if n == 5 else 100 + (n * 13) % 400
        who = "alice@example.com" if n % 2 else "carol@example.com"
        scan = "redteam" if n % 7 == 0 else "normal"
        values.append(
            f"('r{endpoint}{n}', NULL, DATE '{when.date()}', TIMESTAMP '{when:%Y-%m-%d %H:%M:%S}',"
            f" {status}, {latency - 10}, {latency}, 'question {n} about kyoto', 'answer {n}',"
            f" 'e', 'm', '{1 + n % 2}', '{endpoint}', '{who}', 'chat', false, {10 + n % 5},"
            f" {20 + n % 7}, 'prod', '{scan}', NULL, 't{endpoint}{n}')"
        )
    values.append(
        "('broken', NULL, NULL, TIMESTAMP '"
        f"{now - timedelta(minutes=3):%Y-%m-%d %H:%M:%S}', NULL, NULL, NULL, NULL, NULL, NULL, "
        f"NULL, NULL, '{endpoint}', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
    )
    for start in range(0, len(values), 500):
        sql(client, f"INSERT INTO {name} VALUES " + ", ".join(values[start : start + 500]))
