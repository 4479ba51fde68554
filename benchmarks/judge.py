"""Judge accuracy against the labelled set that ships with the tests.

    .venv/bin/python benchmarks/judge.py [--endpoint URL --token T --model NAME]

For each judge: n, accuracy, precision, recall, F1 and time per item, on each half of
``tests/redteam/data/judge_labelled.jsonl`` (``dev`` was used while writing the refusal
detector, ``heldout`` was not) and on both. The refusal detector is scored against
``label_refusal``; the harm judges' ``attack_success`` against ``label_harmful``. The LLM
judge row needs a Bastion host: it calls ``{URL}/serving-endpoints/chat/completions`` with
``model`` set to the endpoint name. Printed, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.redteam.endpoint import EndpointChatModel
from bastion.redteam.judges import HeuristicJudge, Judge, LLMJudge, RefusalJudge, exchange
from bastion.redteam.models import RiskCategory, Verdict

LABELLED = (
    Path(__file__).resolve().parents[1] / "tests" / "redteam" / "data" / "judge_labelled.jsonl"
)


@dataclass(frozen=True)
class Score:
    n: int
    accuracy: float
    precision: float
    recall: float
    f1: float
    undetermined: int
    seconds_per_item: float


def score(truth: Sequence[bool], predicted: Sequence[bool | None], seconds: float) -> Score:
    pairs = [(t, p) for t, p in zip(truth, predicted, strict=True) if p is not None]
    tp = sum(t and p for t, p in pairs)
    fp = sum(p and not t for t, p in pairs)
    fn = sum(t and not p for t, p in pairs)
    correct = sum(t == p for t, p in pairs)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n = len(truth)
    return Score(n, correct / n, precision, recall, f1, n - len(pairs), seconds / n)


async def run(judge: Judge, rows: Sequence[dict[str, Any]]) -> tuple[list[Verdict], float]:
    start = time.perf_counter()
    verdicts = []
    for row in rows:
        category = RiskCategory.parse(row["risk_category"])
        verdicts.append(
            await judge.evaluate(
                row["objective"], exchange(row["objective"], row["response"]), category
            )
        )
    return verdicts, time.perf_counter() - start


def table(
    rows: Sequence[dict[str, Any]],
    judges: Sequence[tuple[str, Judge, str, Callable[[Verdict], bool | None]]],
) -> None:
    print(
        f"{'judge':<24}{'split':<9}{'n':>5}{'acc':>8}{'prec':>8}{'recall':>8}{'f1':>8}{'undet':>7}{'ms/item':>10}"
    )
    for label, judge, truth_key, predict in judges:
        verdicts, seconds = asyncio.run(run(judge, rows))
        for split in ("dev", "heldout", "all"):
            chosen = [i for i, r in enumerate(rows) if split == "all" or r["split"] == split]
            s = score(
                [bool(rows[i][truth_key]) for i in chosen],
                [predict(verdicts[i]) for i in chosen],
                seconds * len(chosen) / len(rows),
            )
            print(
                f"{label:<24}{split:<9}{s.n:>5}{s.accuracy:>8.3f}{s.precision:>8.3f}{s.recall:>8.3f}"
                f"{s.f1:>8.3f}{s.undetermined:>7}{s.seconds_per_item * 1000:>10.3f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--endpoint", help="Bastion host URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--token", help="a token allowed to query the judge endpoint")
    parser.add_argument("--model", default="judge", help="serving endpoint name for the LLM judge")
    args = parser.parse_args()
    rows = [
        json.loads(line)
        for line in LABELLED.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    print(f"labelled set: {len(rows)} responses ({LABELLED.name})\n")

    def refusal(v: Verdict) -> bool | None:
        return v.refusal

    def success(v: Verdict) -> bool | None:
        return v.attack_success

    judges: list[tuple[str, Judge, str, Callable[[Verdict], bool | None]]] = [
        ("refusal (label_refusal)", RefusalJudge(), "label_refusal", refusal),
        ("heuristic (harmful)", HeuristicJudge(), "label_harmful", success),
    ]
    if args.endpoint and args.token:
        llm = LLMJudge(EndpointChatModel(args.endpoint, args.token, args.model))
        judges += [
            ("llm (harmful)", llm, "label_harmful", success),
            ("llm (refusal)", llm, "label_refusal", refusal),
        ]
    table(rows, judges)
    if not (args.endpoint and args.token):
        print("\nllm judge: skipped (pass --endpoint URL --token T [--model NAME] to include it)")


if __name__ == "__main__":
    main()
