"""The dashboard's Ops view: time to first full render in headless Chromium over a payload
table of 1,000,000 rows, beside the same statements run directly in the same run.

    python benchmarks/dashboard.py [--rows 1000000] [--repeat 3]

A real server (with the built-in dashboard app) on loopback; a payload table seeded with
``--rows`` rows (written as Delta directly, then read only through governed SQL); a user who
may read it. "Direct" is the Ops view's statements run through ``bastion.sql`` with the
user's token, one after another and then at once (as the view runs them); "render" is
from navigation until every tile, the chart, the anomaly panels and the rows table are on
screen, on a fresh URL each time (so no cache helps), then once more on the same URL
(cached). Needs Debian's chromium. Prints a table; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlencode

import httpx
import numpy as np
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "dashboard")]

from payload_data import PAYLOAD_DDL, sql  # noqa: E402

from bastion import sql as bastion_sql  # noqa: E402
from bastion.bootstrap import initialize  # noqa: E402
from bastion.dashboard.queries import (  # noqa: E402
    OpsQueries,
    Statement,
    payload_tables_statement,
)
from bastion.dashboard.state import ViewState  # noqa: E402
from bastion.governance.securables import SecurableType  # noqa: E402
from bastion.platform import Platform  # noqa: E402
from bastion.server.run import deploy_dashboard  # noqa: E402
from conftest import ServerThread, free_port, make_settings  # noqa: E402

ADMIN = "bstp_" + "a" * 40
PASSWORD = "benchmark-password"
TABLE = "main.default.bench_payload"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def seed(platform: Platform, rows: int, now: datetime) -> None:
    location = platform.governance.get(SecurableType.TABLE, TABLE).properties["storage_location"]
    schema = DeltaTable(location).schema().to_arrow()
    schema = pa.schema(schema)  # deltalake's arro3 schema → pyarrow
    rng = np.random.default_rng(7)
    seconds = rng.integers(0, 48 * 3600, rows)
    times = np.datetime64(now.replace(tzinfo=None), "us") - seconds.astype("timedelta64[s]")
    status = np.where(rng.random(rows) < 0.03, 500, 200).astype("int32")
    latency = (rng.lognormal(5.5, 0.6, rows)).astype("int64")
    users = np.array([f"user{n}@example.com" for n in range(50)])
    columns = {
        "request_id": pa.array([f"r{n}" for n in range(rows)]),
        "client_request_id": pa.nulls(rows, pa.string()),
        "request_date": pa.array(times.astype("datetime64[D]")),
        "request_time": pa.array(times, pa.timestamp("us", tz="UTC")),
        "status_code": pa.array(status),
        "execution_duration_ms": pa.array(latency - 5),
        "total_duration_ms": pa.array(latency),
        "request": pa.array(np.char.add("question ", (np.arange(rows) % 997).astype(str))),
        "response": pa.array(np.char.add("answer ", (np.arange(rows) % 991).astype(str))),
        "served_entity_name": pa.array(["smollm2-1"] * rows),
        "model_name": pa.array(["main.default.smollm2"] * rows),
        "model_version": pa.array(np.where(rng.random(rows) < 0.5, "1", "2")),
        "endpoint_name": pa.array(["bench"] * rows),
        "requester": pa.array(users[rng.integers(0, 50, rows)]),
        "api": pa.array(["chat"] * rows),
        "stream": pa.array(np.zeros(rows, bool)),
        "input_tokens": pa.array(rng.integers(5, 200, rows)),
        "output_tokens": pa.array(rng.integers(5, 400, rows)),
        "environment": pa.array(np.where(rng.random(rows) < 0.8, "prod", "staging")),
        "scan_type": pa.array(np.where(rng.random(rows) < 0.05, "redteam", "normal")),
        "scan_id": pa.nulls(rows, pa.string()),
        "trace_id": pa.array([f"t{n}" for n in range(rows)]),
    }
    table = pa.table({f.name: columns[f.name].cast(f.type) for f in schema})
    write_deltalake(location, table, mode="append")


def rendered(page: Page) -> None:
    """Every tile, the chart drawn (its SVG traces, not an empty box), the anomaly panels and
    the rows table on screen, and Streamlit idle: no run, spinner, status widget or stale
    element left."""
    page.locator('[data-testid="stMetricValue"]').nth(7).wait_for(timeout=120_000)
    page.locator('[data-testid="stPlotlyChart"] .main-svg g.trace').first.wait_for(timeout=120_000)
    page.locator('[data-testid="stDataFrame"]').last.wait_for(timeout=120_000)
    page.locator('[data-testid="stTable"]').first.wait_for(timeout=120_000)
    page.wait_for_function(
        """() => !document.querySelector('[data-testid="stSpinner"]')
          && !document.querySelector('[data-testid="stStatusWidget"]')
          && !document.querySelector('[data-stale="true"]')
          && document.querySelector('[data-testid="stApp"]')?.dataset.teststate !== 'running'""",
        timeout=120_000,
        polling=50,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    now = datetime.now(UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        settings = make_settings(
            Path(tmp) / "home", f"sqlite:///{tmp}/m.db", port=port, dashboard=True
        )
        platform = Platform(settings)
        initialize(platform)
        deploy_dashboard(platform)
        with ServerThread(platform, port=port) as url:
            admin = httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=120
            )
            sql(admin, PAYLOAD_DDL.format(name=TABLE))
            started = time.perf_counter()
            seed(platform, args.rows, now)
            seeded = time.perf_counter() - started
            made = admin.post(
                "/api/2.0/preview/scim/v2/Users",
                json={"userName": "viewer@example.com", "password": PASSWORD},
            )
            assert made.status_code == 201, made.text
            sql(admin, f"GRANT SELECT ON TABLE {TABLE} TO `viewer@example.com`")
            token = admin.post(
                "/oidc/v1/token",
                data={
                    "grant_type": "password",
                    "username": "viewer@example.com",
                    "password": PASSWORD,
                },
            ).json()["access_token"]

            direct: list[float] = []
            for n in range(args.repeat):
                state = ViewState(
                    start=(now - timedelta(hours=24, seconds=n)).isoformat(), end=now.isoformat()
                )
                ops = OpsQueries([TABLE], state)
                begin = time.perf_counter()
                with bastion_sql.connect(server_hostname=url, access_token=token) as conn:
                    for statement in (payload_tables_statement(), *ops.panels().values()):
                        with conn.cursor() as cursor:
                            cursor.execute(statement.sql, statement.params)
                            cursor.fetchall_arrow()
                direct.append(time.perf_counter() - begin)

            # The same statements at once, one connection each, as the view runs them.
            together: list[float] = []
            for n in range(args.repeat):
                state = ViewState(
                    start=(now - timedelta(hours=24, seconds=50 + n)).isoformat(),
                    end=now.isoformat(),
                )
                ops = OpsQueries([TABLE], state)
                statements = list(ops.panels().values())

                def run(statement: Statement) -> None:
                    with (
                        bastion_sql.connect(server_hostname=url, access_token=token) as conn,
                        conn.cursor() as cursor,
                    ):
                        cursor.execute(statement.sql, statement.params)
                        cursor.fetchall_arrow()

                begin = time.perf_counter()
                with ThreadPoolExecutor(max_workers=len(statements)) as pool:
                    list(pool.map(run, statements))
                together.append(time.perf_counter() - begin)

            cold: list[float] = []
            warm: list[float] = []
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1100})
                page.goto(f"{url}/login?next=/")
                page.fill("#username", "viewer@example.com")
                page.fill("#password", PASSWORD)
                page.click("button[type=submit]")
                page.goto(f"{url}/apps/dashboard/")  # Streamlit's assets into the cache
                rendered(page)
                for n in range(args.repeat):
                    params = {
                        "start": (now - timedelta(hours=24, seconds=100 + n)).isoformat(),
                        "end": now.isoformat(),
                    }
                    target = f"{url}/apps/dashboard/?{urlencode(params, quote_via=quote)}"
                    begin = time.perf_counter()
                    page.goto(target)
                    rendered(page)
                    cold.append(time.perf_counter() - begin)
                    begin = time.perf_counter()
                    page.goto(target)
                    rendered(page)
                    warm.append(time.perf_counter() - begin)
                browser.close()
        platform.close()

    def row(label: str, values: list[float]) -> str:
        return (
            f"| {label:<44} | {statistics.median(values):>8.2f} | {min(values):>8.2f} | "
            f"{max(values):>8.2f} |"
        )

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"\nOps view over {args.rows:,} payload rows (seeded in {seeded:.1f} s), "
        f"{args.repeat} runs each, seconds; "
        f"{os.cpu_count()} CPUs, load average {load:.1f} at the end"
    )
    print("| what | median | min | max |".replace("what", "what" + " " * 40))
    print("|" + "-" * 46 + "|----------|----------|----------|")
    print(row("direct: the 7 Ops statements, one by one", direct))
    print(row("direct: the 6 panel statements at once", together))
    print(row("render in Chromium, uncached (goal ≤ 2 s)", cold))
    print(row("render in Chromium, same URL again (cached)", warm))
    print(f"\nrender / direct (median): {statistics.median(cold) / statistics.median(direct):.2f}×")


if __name__ == "__main__":
    main()
