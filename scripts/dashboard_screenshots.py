"""Screenshots of every dashboard view with real data, for docs/images/ and the README tour.

    python scripts/dashboard_screenshots.py [--out docs/images] [--requests 12]

Starts ``bastion up`` (the embedded SmolLM2 model and the built-in dashboard) in a fresh
home, sends normal chat traffic through the gateway with the OpenAI SDK, runs one small
red-team scan, then signs in through /login in headless Chromium (Debian's ``chromium``)
and captures each page once it is fully drawn (``settle``). Nothing here is a test.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from openai import OpenAI
from playwright.sync_api import Page, sync_playwright

ADMIN_TOKEN = "bstp_" + "s" * 40
PASSWORD = "screenshot-password"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
QUESTIONS = [
    "What is the best season to visit Kyoto?",
    "Recommend a temple in Kyoto.",
    "How do I get from Kyoto station to Arashiyama?",
    "What is matcha?",
    "Suggest a one-day Kyoto itinerary.",
    "Where can I see geisha in Kyoto?",
    "Is Fushimi Inari crowded in the morning?",
    "What food is Kyoto famous for?",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(1)
    raise SystemExit(f"timed out waiting for {what}")


def sql(admin: httpx.Client, statement: str) -> list[list[object]]:
    body = admin.post(
        "/api/2.0/sql/statements",
        json={"statement": statement, "warehouse_id": "default", "wait_timeout": "50s"},
    ).json()
    if body["status"]["state"] != "SUCCEEDED":
        raise SystemExit(f"{statement}: {body['status']}")
    return body.get("result", {}).get("data_array") or []


def scan(admin: httpx.Client, strategies: list[str], objectives: int, max_tokens: int) -> str:
    started = admin.post(
        "/api/2.0/redteam/scans",
        json={
            "endpoint": "smollm2",
            "risk_categories": ["violence", "hate_unfairness"],
            "strategies": strategies,
            "num_objectives": objectives,
            "max_tokens": max_tokens,
        },
    )
    started.raise_for_status()
    scan_id = str(started.json()["scan_id"])
    print(f"scan {scan_id} started", flush=True)

    def finished() -> bool:
        status = admin.get(f"/api/2.0/redteam/scans/{scan_id}").json().get("status", "")
        return str(status).upper() not in ("RUNNING", "PENDING", "QUEUED", "STARTING", "")

    wait(finished, 1800, f"scan {scan_id}")
    return scan_id


# True once Streamlit has finished the script run and the browser has drawn it: no status
# widget ("Running…", "Connecting"), no spinner or "Loading…", no stale element, and every
# Plotly chart has its SVG with at least one drawn trace (charts load their code lazily, so
# a screenshot right after the run shows blank boxes).
RENDERED = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.dataset.teststate === 'running') return false;
  if (document.querySelector('[data-testid="stStatusWidget"]')) return false;
  if (document.querySelector('[data-testid="stSpinner"]')) return false;
  if (document.querySelector('[data-stale="true"]')) return false;
  if (document.body.innerText.includes('Loading…')) return false;
  if (!document.querySelector('h1')) return false;
  for (const chart of document.querySelectorAll('[data-testid="stPlotlyChart"]')) {
    const svg = chart.querySelector('.main-svg');
    if (!svg) return false;
    if (!chart.querySelector('g.trace, .hm image, .heatmaplayer image, g.imagelayer image'))
      return false;
  }
  return true;
}"""


def settle(page: Page) -> None:
    """Wait until the view is fully drawn and stays so (nothing reruns or loads after)."""
    for _ in range(3):  # the same state on three checks a second apart
        page.wait_for_load_state("networkidle", timeout=120_000)
        page.wait_for_function(RENDERED, timeout=180_000, polling=250)
        page.wait_for_timeout(1000)
        if page.evaluate(RENDERED):
            page.wait_for_timeout(1000)
            if page.evaluate(RENDERED):
                return
    raise SystemExit(f"{page.url} never settled")


VIEWPORT = {"width": 1440, "height": 1000}


def whole(page: Page) -> None:
    """Grow the window to the page's content (Streamlit scrolls inside its own container,
    so a full-page screenshot would stop at the window) and let it draw again."""
    height = page.evaluate(
        "() => Math.max(...['stMain', 'stAppViewContainer', 'stSidebarContent']"
        '.map(id => document.querySelector(`[data-testid="${id}"]`)?.scrollHeight || 0))'
    )
    page.set_viewport_size({"width": VIEWPORT["width"], "height": min(max(height, 1000), 4000)})
    settle(page)


def populate(url: str, args: argparse.Namespace) -> str:
    """Traffic from two users and one scan; returns the scan's id."""
    admin = httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=300
    )
    wait(lambda: admin.get("/healthz").status_code == 200, 120, "the server")
    wait(
        lambda: admin.get("/api/2.0/serving-endpoints/smollm2").json()["state"]["ready"] == "READY",
        600,
        "the embedded model",
    )
    if (
        admin.get(
            "/api/2.0/preview/scim/v2/Users", params={"filter": 'userName eq "analyst@example.com"'}
        )
        .json()
        .get("totalResults", 0)
        == 0
    ):
        admin.post(
            "/api/2.0/preview/scim/v2/Users",
            json={"userName": "analyst@example.com", "password": PASSWORD},
        ).raise_for_status()
    admin.patch(
        "/api/2.0/permissions/serving-endpoints/smollm2",
        json={
            "access_control_list": [
                {"user_name": "analyst@example.com", "permission_level": "CAN_QUERY"}
            ]
        },
    ).raise_for_status()
    analyst = admin.post(
        "/oidc/v1/token",
        data={"grant_type": "password", "username": "analyst@example.com", "password": PASSWORD},
    ).json()["access_token"]
    print(f"sending {args.requests} requests", flush=True)
    for n in range(args.requests):
        token = ADMIN_TOKEN if n % 3 == 0 else analyst
        client = OpenAI(base_url=f"{url}/serving-endpoints", api_key=token)
        try:
            client.chat.completions.create(
                model="smollm2",
                max_tokens=args.max_tokens,
                messages=[{"role": "user", "content": QUESTIONS[n % len(QUESTIONS)]}],
            )
        except Exception as error:  # an error is traffic too
            print("request failed:", error)
    scan_id = scan(admin, ["baseline", "jailbreak"], args.objectives, args.scan_max_tokens)
    time.sleep(4)  # the writer's flush interval
    return scan_id


def capture(url: str, out: Path, scan_id: str) -> None:
    admin = httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=300
    )
    trace = sql(
        admin,
        "SELECT trace_id FROM main.default.smollm2_payload "
        "WHERE trace_id IS NOT NULL ORDER BY request_time DESC LIMIT 1",
    )
    trace_id = str(trace[0][0]) if trace else ""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(f"{url}/login?next=/apps/dashboard/")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(out / "login.png"))
        page.fill("#username", "admin")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        shots = {
            "ops.png": "/apps/dashboard/?period=1h",
            "ops-sql.png": "/apps/dashboard/?period=1h&sql=1&tz=Asia%2FTokyo",
            "risk.png": f"/apps/dashboard/risk?scan={scan_id}",
            "trace.png": f"/apps/dashboard/trace?trace={trace_id}",
            "models.png": "/apps/dashboard/models?period=6h",
            "audit.png": "/apps/dashboard/audit?period=1h",
        }
        for name, path in shots.items():
            page.set_viewport_size(VIEWPORT)
            page.goto(url + path)
            settle(page)
            whole(page)
            page.screenshot(path=str(out / name))
            print("wrote", out / name)
        viewer = browser.new_page(viewport={"width": 1440, "height": 700})
        viewer.goto(f"{url}/login?next=/apps/dashboard/")
        viewer.fill("#username", "analyst@example.com")
        viewer.fill("#password", PASSWORD)
        viewer.click("button[type=submit]")
        viewer.get_by_text("No access.", exact=False).first.wait_for(timeout=120_000)
        settle(viewer)
        viewer.screenshot(path=str(out / "ops-no-access.png"))
        browser.close()


def main() -> None:
    global ADMIN_TOKEN, PASSWORD
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="docs/images")
    parser.add_argument("--requests", type=int, default=12)
    parser.add_argument("--objectives", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--scan-max-tokens", type=int, default=64)
    parser.add_argument(
        "--attach",
        help="A running server's URL (admin credentials from "
        "BASTION_ADMIN_TOKEN and BASTION_ADMIN_PASSWORD).",
    )
    parser.add_argument("--scan", help="Use this scan (and the traffic there is) instead.")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.attach:
        ADMIN_TOKEN = os.environ.get("BASTION_ADMIN_TOKEN", ADMIN_TOKEN)
        PASSWORD = os.environ.get("BASTION_ADMIN_PASSWORD", PASSWORD)
        capture(args.attach, out, args.scan or populate(args.attach, args))
        return
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "BASTION_HOME": home,
            "BASTION_PORT": str(port),
            "BASTION_ADMIN_PASSWORD": PASSWORD,
            "BASTION_ADMIN_TOKEN": ADMIN_TOKEN,
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "bastion.cli.main", "up"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            capture(url, out, args.scan or populate(url, args))
        finally:
            server.terminate()
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
