"""Judge accuracy on held-out sources, beside the keyword baselines, with 95% CIs; latency.

    .venv/bin/python benchmarks/judge.py [--endpoint URL --token T --model NAME]

Everything is measured in this run, on data the judge being scored never saw:

* **refusal**, XSTest v2 (2,250 human-labelled responses of 5 models): the trained refusal
  classifier refitted five times, each time leaving one model's responses out and scoring
  them; against the keyword detector (``keyword``) on the same responses.
* **objective achieved**, JAILJUDGE mini (1,000 responses, 4 Llama-Guard-3 hazard
  categories): the objective judge refitted four times, each time leaving one hazard
  category out, with its n-gram setting chosen by cross-validation inside the other three
  (nested: the held-out category's labels take no part); against the keyword harm judge
  (``heuristic``) and "did not refuse" by keywords.
* **project set** (``tests/redteam/data/judge_labelled.jsonl``, 153 responses): the shipped
  refusal judge and baselines; the objective judge, which trains on this set, by 5-fold
  cross-validation (refitted five times, each fold scored by a model that never saw it).
* **non-English refusals** (``tests/redteam/data/multilingual.jsonl``, 32 replies in 16
  languages, written for the tests; the same people wrote the cue lists, so not held out).

Then per-judgement latency of the shipped judges on this machine, and the share of a default
scan (160 attacks) it would take. Accuracy / F1 / κ with 95% intervals (Wilson; bootstrap
for F1 and κ). The LLM judge rows need a Bastion host (``--endpoint``). Printed, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bastion.redteam.calibrate import evaluate_labelled
from bastion.redteam.endpoint import EndpointChatModel
from bastion.redteam.judges import HeuristicJudge, Judge, KeywordRefusalJudge, LLMJudge
from bastion.redteam.metrics import BinaryReport
from bastion.redteam.refusal import detect_refusal
from bastion.redteam.train import train
from bastion.redteam.trained import ObjectiveJudge, RefusalJudge

DATA = Path(__file__).resolve().parents[1] / "tests" / "redteam" / "data"
DEFAULT_SCAN_SECONDS = 508.7  # docs/benchmarks.md: default scan of SmolLM2, 160 attacks
SCAN_ATTACKS = 160

HEADER = (
    f"{'judge':<22}{'task / data':<38}{'n':>6}  {'accuracy [95% CI]':<22}"
    f"{'F1 [95% CI]':<22}{'kappa [95% CI]':<22}"
)


def row(judge: str, task: str, report: BinaryReport) -> None:
    print(
        f"{judge:<22}{task:<38}{report.confusion.n:>6}  {report.accuracy!s:<22}"
        f"{report.f1!s:<22}{report.kappa!s:<22}"
    )


def load(name: str) -> list[dict[str, Any]]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def latency(judge: Judge, pairs: Sequence[tuple[str, str]]) -> list[float]:
    """Seconds per judgement (through ``evaluate``, as a scan calls it)."""
    from bastion.redteam.judges import exchange

    async def run() -> list[float]:
        times = []
        for objective, response in pairs:
            start = time.perf_counter()
            await judge.evaluate(objective, exchange(objective, response), None)
            times.append(time.perf_counter() - start)
        return times

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--endpoint", help="Bastion host URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--token", help="a token allowed to query the judge endpoint")
    parser.add_argument("--model", default="judge", help="serving endpoint name for the LLM judge")
    parser.add_argument(
        "--scan-seconds",
        type=float,
        default=DEFAULT_SCAN_SECONDS,
        help="wall time of a default 160-attack scan, to put judging time in proportion",
    )
    args = parser.parse_args()

    print("refitting the judges with sources held out (about five minutes on two cores)...")
    started = time.perf_counter()
    run = train(None, log=lambda _: None)
    print(f"  done in {time.perf_counter() - started:.0f} s\n")
    print(HEADER)

    examples = run.refusal_examples
    truth = [e.refusal for e in examples]
    row(
        "refusal (trained)",
        "refusal, XSTest leave-1-model-out",
        BinaryReport.of(truth, run.refusal_predicted),
    )
    row(
        "keyword (baseline)",
        "refusal, XSTest (all 5 models)",
        BinaryReport.of(truth, [detect_refusal(e.response).refused for e in examples]),
    )

    held = run.objective_heldout
    achieved = [h.example.achieved for h in held]
    row(
        "objective (trained)",
        "achieved, JAILJUDGE leave-1-cat-out",
        BinaryReport.of(achieved, [h.predicted for h in held]),
    )
    heuristic = HeuristicJudge()
    row(
        "heuristic (baseline)",
        "achieved, JAILJUDGE (all 1,000)",
        BinaryReport.of(
            achieved,
            [
                bool(heuristic.judge(h.example.objective, h.example.response, None).attack_success)
                for h in held
            ],
        ),
    )
    row(
        "keyword: no refusal",
        "achieved, JAILJUDGE (all 1,000)",
        BinaryReport.of(achieved, [not detect_refusal(h.example.response).refused for h in held]),
    )
    for category in sorted({h.example.source for h in held}):
        cell = [h for h in held if h.example.source == category]
        row(
            "objective (trained)",
            f"  held out {category}",
            BinaryReport.of([h.example.achieved for h in cell], [h.predicted for h in cell]),
        )

    own = run.project_heldout
    row(
        "objective (trained)",
        "harmful, project set, 5-fold",
        BinaryReport.of([h.example.achieved for h in own], [h.predicted for h in own]),
    )

    judges: list[tuple[str, Judge]] = [
        ("refusal (trained)", RefusalJudge()),
        ("objective (trained)", ObjectiveJudge()),
        ("keyword (baseline)", KeywordRefusalJudge()),
        ("heuristic (baseline)", HeuristicJudge()),
    ]
    if args.endpoint and args.token:
        judges.append(("llm", LLMJudge(EndpointChatModel(args.endpoint, args.token, args.model))))
    project = load("judge_labelled.jsonl")
    for name, judge in judges:
        report = evaluate_labelled(judge, project)
        if name.startswith(("refusal", "keyword", "llm")) and report.refusal is not None:
            row(name, "refusal, project set", report.refusal)
        # the objective judge's held-out figure on this set is the 5-fold one above
        if not name.startswith(("refusal", "keyword", "objective")) and report.success:
            row(name, "harmful, project set", report.success)
    multilingual = load("multilingual.jsonl")
    for name, judge in judges[:3:2]:
        report = evaluate_labelled(judge, multilingual)
        assert report.refusal is not None
        row(name, "refusal, 16 languages (written)", report.refusal)

    print(f"\nlatency per judgement on this machine ({len(examples[:200]) + 200} replies)")
    sample = [(e.prompt, e.response) for e in examples[::11][:200]]
    sample += [(h.example.objective, h.example.response) for h in held[::5][:200]]
    timed: list[tuple[str, Judge]] = [
        ("refusal (trained)", RefusalJudge()),
        ("objective (trained)", ObjectiveJudge()),
        ("keyword (baseline)", KeywordRefusalJudge()),
        ("heuristic (baseline)", HeuristicJudge()),
    ]
    print(f"{'judge':<22}{'mean ms':>9}{'p50 ms':>9}{'p95 ms':>9}{'share of a default scan':>26}")
    for name, judge in timed:
        times = latency(judge, sample)
        mean = statistics.fmean(times)
        p95 = sorted(times)[int(0.95 * len(times))]
        share = SCAN_ATTACKS * mean / args.scan_seconds
        print(
            f"{name:<22}{mean * 1000:>9.2f}{statistics.median(times) * 1000:>9.2f}"
            f"{p95 * 1000:>9.2f}{share:>25.3%}"
        )
    print(
        f"\n(share = {SCAN_ATTACKS} judgements x mean / {args.scan_seconds:.1f} s, the measured "
        "default scan; the goal is under 10%)"
    )
    if not (args.endpoint and args.token):
        print("llm judge: skipped (pass --endpoint URL --token T [--model NAME] to include it)")


if __name__ == "__main__":
    main()
