"""``bastion redteam scan|evaluate|diff|list|show|judges``.

``scan`` runs in this process with the profile's token (the scanner is an ordinary gateway
client), keeps a checkpoint next to ``--output`` (``.bastion-scan-<id>.jsonl``) and stores
rows and the scan record on the server (``POST /api/2.0/redteam/scans/{id}/results``, ``PUT
/api/2.0/redteam/scans/{id}``), which appends them to ``system.redteam.*``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bastion.cli.common import client, console, err_console, print_json, print_table
from bastion.errors import BastionError, InvalidRequest

if TYPE_CHECKING:
    from bastion.client import BastionClient
    from bastion.redteam.models import AttackResult
    from bastion.redteam.scan import (
        Checkpoint,
        ScanReport,
    )

app = typer.Typer(
    help="Red teaming: scan endpoints, judge responses, diff scans, gate releases.",
    no_args_is_help=True,
)

BATCH = 10


def _path(scan_id: str, suffix: str = "") -> str:
    return f"/api/2.0/redteam/scans/{scan_id}{suffix}"


class HttpSink:
    """Stores a CLI-run scan's rows and record through the server."""

    def __init__(self, c: BastionClient, scan_id: str) -> None:
        self.c = c
        self.scan_id = scan_id

    def results(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for start in range(0, len(rows), 500):
            self.c.request(
                "POST",
                _path(self.scan_id, "/results"),
                json={"results": [dict(r) for r in rows[start : start + 500]]},
            )

    def finish(self, record: Mapping[str, Any]) -> None:
        self.c.request("PUT", _path(self.scan_id), json=dict(record))


@contextmanager
def _errors() -> Iterator[None]:
    """A Bastion error as one line on stderr and exit 1, without needing a profile."""
    try:
        yield
    except BastionError as exc:
        err_console.print(f"[red]Error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(1) from None


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[red]Error:[/red] {message}", highlight=False)
    return typer.Exit(1)


def _server_rows(c: BastionClient, scan_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = c.request("GET", _path(scan_id, "/results"))["results"]
    return rows


def _resume_state(
    c: BastionClient, scan_id: str, directory: Path
) -> tuple[dict[str, Any], list[dict[str, Any]], str | None, Checkpoint]:
    """Parameters, finished rows and created_at of a scan to resume: the local checkpoint
    if there is one (rows the server lacks are uploaded), else the server's record."""
    from bastion.redteam.scan import Checkpoint, ScanConfig, checkpoint_path
    from bastion.redteam.store import decode_json

    checkpoint = Checkpoint(checkpoint_path(directory, scan_id))
    if checkpoint.path.exists():
        header, rows = checkpoint.read()
        stored = {r["result_id"] for r in _server_rows_or_empty(c, scan_id)}
        missing = [r for r in rows if r["result_id"] not in stored]
        if missing:
            HttpSink(c, scan_id).results(missing)
        return header["parameters"], rows, header.get("created_at"), checkpoint
    record = c.request("GET", _path(scan_id))
    parameters = decode_json(record.get("parameters"))
    if not isinstance(parameters, dict):
        raise InvalidRequest(f"Scan '{scan_id}' has no stored parameters to resume from.")
    rows = _server_rows(c, scan_id)
    checkpoint.start(scan_id, ScanConfig.from_parameters(parameters), record["created_at"])
    for row in rows:
        checkpoint.append(row)
    return parameters, rows, record.get("created_at"), checkpoint


def _server_rows_or_empty(c: BastionClient, scan_id: str) -> list[dict[str, Any]]:
    try:
        return _server_rows(c, scan_id)
    except BastionError:
        return []


def _interval(card: Mapping[str, Any]) -> str:
    """`` (95% CI a–b%, judge v)`` from a scorecard, or nothing for an older one."""
    summary = (card.get("risk_category_summary") or [{}])[0]
    low, high = summary.get("overall_asr_ci_lower"), summary.get("overall_asr_ci_upper")
    if low is None or high is None:
        return ""
    judge = card.get("judge") or {}
    name = judge.get("version") or judge.get("name") or "?"
    return f" (95% CI {low:.2f}–{high:.2f}% for judge error and sample size; judge {name})"


def print_scorecard(report: ScanReport) -> None:
    from bastion.redteam.progress import scorecard_table

    summary = report.summary
    console.print(scorecard_table(report.document, title=f"Red-team scan {report.scan_id}"))
    console.print(
        f"Overall ASR [bold]{summary.asr:.2f}%[/bold]"
        f"{_interval(report.document['scorecard'])}: {summary.successes} successes / "
        f"{summary.evaluated} evaluated ({summary.total} attacks, {summary.errors} errors, "
        f"{summary.undetermined} undetermined). Status: {report.status}.",
        highlight=False,
    )


def _gate(results: Sequence[AttackResult], fail_over_asr: float | None) -> None:
    from bastion.redteam.scorecard import gate

    if fail_over_asr is None:
        return
    outcome = gate(results, fail_over_asr)
    if not outcome.passed:
        for failure in outcome.failures:
            err_console.print(f"[red]Gate failed:[/red] {failure}", highlight=False)
        raise typer.Exit(1)
    console.print(f"Gate passed: ASR {outcome.asr:.2f}% <= {fail_over_asr}%.", highlight=False)


FailOver = Annotated[
    float | None,
    typer.Option("--fail-over-asr", help="Exit 1 if the overall ASR (percent) is above this."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


@app.command("scan")
def scan(
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="Serving endpoint to attack.")
    ] = None,
    risk_categories: Annotated[
        str | None, typer.Option("--risk-categories", help="Comma-separated risk categories.")
    ] = None,
    strategies: Annotated[
        str | None,
        typer.Option("--strategies", help="Comma-separated strategies or groups (easy, ...)."),
    ] = None,
    num_objectives: Annotated[
        int | None, typer.Option("--num-objectives", help="Objectives per risk category.")
    ] = None,
    judge: Annotated[
        str | None,
        typer.Option("--judge", help="objective (default), refusal, keyword, heuristic or llm."),
    ] = None,
    judge_endpoint: Annotated[
        str | None,
        typer.Option(
            "--judge-endpoint",
            help="Endpoint the llm judge asks; with a trained judge, where it escalates.",
        ),
    ] = None,
    judge_calibration: Annotated[
        Path | None,
        typer.Option("--judge-calibration", help="A file from `bastion redteam judges calibrate`."),
    ] = None,
    escalate_below: Annotated[
        float | None,
        typer.Option("--escalate-below", help="Escalate verdicts under this confidence (0.75)."),
    ] = None,
    attacker_endpoint: Annotated[
        str | None,
        typer.Option("--attacker-endpoint", help="Attacker model for tense/multi_turn/crescendo."),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", help="Attacks in flight (default 4).")
    ] = None,
    threshold: Annotated[
        int | None, typer.Option("--threshold", help="Success when severity > this (0-7).")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Objective sampling seed.")] = None,
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", help="Cap on each reply's tokens.")
    ] = None,
    objectives: Annotated[
        Path | None,
        typer.Option("--objectives", help="Custom objectives (Azure seed-prompt JSON)."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the scorecard JSON here.")
    ] = None,
    resume: Annotated[
        str | None, typer.Option("--resume", help="Continue the scan with this id.")
    ] = None,
    fail_over_asr: FailOver = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Attack an endpoint through the gateway, store the results, print the scorecard."""
    from bastion.client.profiles import load_profile
    from bastion.redteam.objectives import read_seed_file
    from bastion.redteam.progress import RichScanProgress
    from bastion.redteam.scan import Checkpoint, ScanConfig, Scanner, checkpoint_path, new_scan_id

    options: dict[str, Any] = {
        "endpoint": endpoint,
        "risk_categories": risk_categories,
        "strategies": strategies,
        "num_objectives": num_objectives,
        "judge": judge,
        "judge_endpoint": judge_endpoint,
        "attacker_endpoint": attacker_endpoint,
        "concurrency": concurrency,
        "threshold": threshold,
        "seed": seed,
        "max_tokens": max_tokens,
        "escalate_below": escalate_below,
    }
    if judge_calibration is not None:
        from bastion.redteam.trained import Calibration

        with _errors():
            options["judge_calibration"] = Calibration.load(judge_calibration).to_json()
    given = {k: v for k, v in options.items() if v is not None}
    if objectives is not None:  # read here, on the user's machine: the server opens no path
        with _errors():
            given["seed_prompts"] = read_seed_file(objectives)
        given["objectives_file"] = objectives.name
    directory = output.parent if output else Path.cwd()
    with client() as c:
        profile = load_profile()
        previous: list[dict[str, Any]] = []
        created_at = None
        if resume:
            parameters, previous, created_at, checkpoint = _resume_state(c, resume, directory)
            config = ScanConfig.from_parameters({**parameters, **given})
            scan_id = resume
        else:
            if endpoint is None:
                raise _fail("Give the endpoint to attack with --endpoint (or --resume SCAN_ID).")
            config = ScanConfig.from_parameters(given)
            scan_id = new_scan_id()
            checkpoint = Checkpoint(checkpoint_path(directory, scan_id))
        progress = None if quiet else RichScanProgress(scan_id, console=err_console)
        # The scan's own credential: the gateway tags its requests as this scan's.
        credential = c.request(
            "POST", _path(scan_id, "/credentials"), json={"endpoint_name": config.endpoint}
        )["token_value"]
        scanner = Scanner(
            config,
            host=profile.host,
            token=credential,
            scan_id=scan_id,
            sink=HttpSink(c, scan_id),
            checkpoint=checkpoint,
            progress=progress,
            requester=None,
            previous=previous,
            created_at=created_at,
            batch_size=BATCH,
        )
        try:
            if progress is not None:
                with progress:
                    report = scanner.run()
            else:
                report = scanner.run()
        except KeyboardInterrupt:
            err_console.print(
                f"Interrupted. Resume with: bastion redteam scan --resume {scan_id}"
                + (f" --output {output}" if output else ""),
                highlight=False,
            )
            raise typer.Exit(130) from None
        print_scorecard(report)
        if output is not None:
            document = {"scan_id": scan_id, **report.document}
            output.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
            console.print(f"Scorecard written to {output}.", highlight=False)
        if report.status == "completed":
            checkpoint.path.unlink(missing_ok=True)
        _gate(report.results, fail_over_asr)


@app.command("evaluate")
def evaluate(
    judge: Annotated[
        str, typer.Option("--judge", help="objective, refusal, keyword, heuristic or llm.")
    ],
    input_file: Annotated[Path, typer.Option("--input", help="JSONL of objective/response.")],
    output: Annotated[Path | None, typer.Option("--output", help="Write verdicts here.")] = None,
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="Endpoint the llm judge asks.")
    ] = None,
    threshold: Annotated[int, typer.Option("--threshold")] = 3,
) -> None:
    """Judge a JSONL file of responses with the scanner's judges."""
    from bastion.client.profiles import load_profile
    from bastion.redteam.endpoint import EndpointChatModel
    from bastion.redteam.evaluate import evaluate_file, make_judge
    from bastion.redteam.models import Thresholds

    model = None
    with _errors():
        if endpoint is not None:
            profile = load_profile()
            model = EndpointChatModel(profile.host, profile.token or "", endpoint)
        chosen = make_judge(judge, model=model, thresholds=Thresholds(default=threshold))
        records = evaluate_file(chosen, input_file, output)
    if output is None:
        for record in records:
            typer.echo(json.dumps(record, ensure_ascii=False))
        return
    successes = sum(r.get("attack_success") is True for r in records)
    console.print(
        f"{len(records)} responses judged, {successes} attack successes; wrote {output}.",
        highlight=False,
    )


def _load(c: BastionClient | None, ref: str) -> list[AttackResult]:
    from bastion.redteam.scorecard import results_from_attack_details
    from bastion.redteam.store import attack_result

    path = Path(ref)
    if path.is_file():
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InvalidRequest(f"{ref} is not JSON: {exc}") from None
        return results_from_attack_details(document)
    if c is None:
        raise InvalidRequest(f"{ref} is not a file.")
    return [attack_result(r) for r in _server_rows(c, ref)]


@app.command("diff")
def diff(
    scan_a: Annotated[str, typer.Argument(help="Before: a scan id or a scorecard JSON file.")],
    scan_b: Annotated[str, typer.Argument(help="After: a scan id or a scorecard JSON file.")],
    fail_over_asr: FailOver = None,
    as_json: AsJson = False,
) -> None:
    """ASR deltas per category × complexity, newly failing and newly passing cases."""
    from bastion.redteam.scorecard import diff_scans

    if Path(scan_a).is_file() and Path(scan_b).is_file():
        with _errors():
            before, after = _load(None, scan_a), _load(None, scan_b)
    else:
        with client() as c:
            before, after = _load(c, scan_a), _load(c, scan_b)
    result = diff_scans(before, after).to_dict()
    if as_json:
        print_json(result)
    else:
        console.print(
            f"Overall ASR {result['overall_asr_before']:.2f}% -> "
            f"{result['overall_asr_after']:.2f}% ({result['overall_asr_delta']:+.2f})",
            highlight=False,
        )
        print_table(
            result["asr_deltas"],
            ["risk_category", "attack_complexity", "asr_before", "asr_after", "asr_delta"],
            False,
        )
        for key, label in (("newly_failing", "Newly failing"), ("newly_passing", "Newly passing")):
            console.print(f"{label}: {len(result[key])}", highlight=False)
            if result[key]:
                print_table(
                    result[key], ["risk_category", "objective_id", "attack_technique"], False
                )
    _gate(after, fail_over_asr)


@app.command("list")
def list_scans(as_json: AsJson = False) -> None:
    """Scans you started (admins: all)."""
    with client() as c:
        scans = c.request("GET", "/api/2.0/redteam/scans")["scans"]
    print_table(
        scans,
        ["scan_id", "status", "endpoint_name", "requester", "created_at", "evaluated", "asr"],
        as_json,
    )


@app.command("show")
def show(
    scan_id: str,
    as_json: AsJson = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the full scorecard JSON here.")
    ] = None,
) -> None:
    """A scan's status and scorecard."""
    from bastion.redteam.progress import scorecard_table
    from bastion.redteam.scan import ScanConfig, scorecard_for

    with client() as c:
        record = c.request("GET", _path(scan_id))
        if output is not None:
            parameters = record.get("parameters")
            if not isinstance(parameters, dict):
                raise InvalidRequest(f"Scan '{scan_id}' has no parameters yet (still running?).")
            document = scorecard_for(
                _server_rows(c, scan_id), ScanConfig.from_parameters(parameters)
            )
            output.write_text(
                json.dumps({"scan_id": scan_id, **document}, indent=2, ensure_ascii=False) + "\n"
            )
    if as_json:
        print_json(record)
        return
    fields = ("scan_id", "status", "endpoint_name", "requester", "created_at", "finished_at")
    for key in fields:
        if record.get(key) is not None:
            console.print(f"{key}: {record[key]}", highlight=False)
    if "progress" in record:
        p = record["progress"]
        console.print(
            f"progress: {p['done']}/{p['total']} ({p['succeeded']} succeeded, "
            f"{p['errors']} errors)",
            highlight=False,
        )
    if isinstance(record.get("scorecard"), dict):
        console.print(scorecard_table({"scorecard": record["scorecard"]}))
        console.print(
            f"Overall ASR {record.get('asr', 0.0):.2f}%{_interval(record['scorecard'])}: "
            f"{record.get('succeeded')} successes / "
            f"{record.get('evaluated')} evaluated ({record.get('errors')} errors).",
            highlight=False,
        )
    if record.get("message"):
        console.print(f"message: {record['message']}", highlight=False)


judges_app = typer.Typer(
    help="The judges: measure them on labelled responses, recalibrate them on yours.",
    no_args_is_help=True,
)
app.add_typer(judges_app, name="judges")

LabelledInput = Annotated[
    Path,
    typer.Option(
        "--input",
        help="JSONL: objective, response, and label_refusal / label_harmful / label_severity.",
    ),
]


def _estimate(value: Mapping[str, float] | None) -> str:
    if not value:
        return "-"
    return f"{value['value']:.3f} [{value['ci_low']:.3f}, {value['ci_high']:.3f}]"


@judges_app.command("evaluate")
def judges_evaluate(
    input_file: LabelledInput,
    judge: Annotated[
        str,
        typer.Option("--judge", help="Comma-separated judges (default objective,refusal,keyword)."),
    ] = "objective,refusal,keyword",
    calibration: Annotated[
        Path | None, typer.Option("--calibration", help="Use this calibration of the judge.")
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="Endpoint the llm judge asks.")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Accuracy, precision, recall, F1, Cohen's kappa (and severity MAE) with 95% CIs."""
    from bastion.client.profiles import load_profile
    from bastion.redteam.calibrate import evaluate_labelled, read_labelled
    from bastion.redteam.endpoint import EndpointChatModel
    from bastion.redteam.evaluate import make_judge
    from bastion.redteam.scan import split_list
    from bastion.redteam.trained import Calibration

    reports = []
    with _errors():
        rows = read_labelled(input_file)
        cal = Calibration.load(calibration) if calibration is not None else None
        model = None
        if endpoint is not None:
            profile = load_profile()
            model = EndpointChatModel(profile.host, profile.token or "", endpoint)
        for name in split_list(judge):
            chosen = make_judge(
                name, model=model, calibration=cal if cal and cal.judge == name else None
            )
            reports.append(evaluate_labelled(chosen, rows, name=name).to_dict())
    if as_json:
        print_json({"input": str(input_file), "reports": reports})
        return
    table = []
    for report in reports:
        for target, label in (("refusal", "refusal"), ("attack_success", "harmful")):
            metrics = report[target]
            if metrics is None:
                continue
            table.append(
                {
                    "judge": report["judge"],
                    "label": label,
                    "n": metrics["n"],
                    "accuracy": _estimate(metrics["accuracy"]),
                    "precision": _estimate(metrics["precision"]),
                    "recall": _estimate(metrics["recall"]),
                    "f1": _estimate(metrics["f1"]),
                    "kappa": _estimate(metrics["kappa"]),
                    "severity_mae": _estimate(report["severity_mae"]),
                    "ms/item": f"{report['ms_per_item']:.2f}",
                }
            )
    columns = ["judge", "label", "n", "accuracy", "precision", "recall", "f1", "kappa"]
    print_table(table, [*columns, "severity_mae", "ms/item"], False)


@judges_app.command("calibrate")
def judges_calibrate(
    input_file: LabelledInput,
    output: Annotated[Path, typer.Option("--output", "-o", help="Write the calibration here.")],
    judge: Annotated[
        str, typer.Option("--judge", help="The trained judge: objective or refusal.")
    ] = "objective",
) -> None:
    """Recalibrate a trained judge on your labelled responses (use with --judge-calibration)."""
    from bastion.redteam.calibrate import calibrate, read_labelled
    from bastion.redteam.evaluate import make_judge

    with _errors():
        rows = read_labelled(input_file)
        result = calibrate(make_judge(judge), rows, source=input_file.name)
    output.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    error = result.error
    console.print(
        f"Calibrated the {result.judge} judge on {result.n} responses: cross-validated accuracy "
        f"{result.accuracy:.3f}, sensitivity {error.sensitivity:.3f}, specificity "
        f"{error.specificity:.3f}. Wrote {output}; use it with "
        f"--judge-calibration {output}.",
        highlight=False,
    )
