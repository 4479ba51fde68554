"""``bastion redteam evaluate``: run a judge over a JSONL file of responses.

Each input line is ``{"objective": ..., "response": ..., "risk_category"?: ...}``; each
output line carries the verdict (``refusal``, ``severity``, ``attack_success``, ``reason``)
next to the input fields. Verdicts go through :func:`bastion.redteam.attack.assess`, the
same call the scanner makes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bastion.errors import InvalidRequest
from bastion.redteam.attack import assess
from bastion.redteam.judges import HeuristicJudge, Judge, LLMJudge, RefusalJudge, exchange
from bastion.redteam.models import ChatModel, RiskCategory, Thresholds

JUDGE_NAMES = ("refusal", "heuristic", "llm")


def make_judge(
    name: str, *, model: ChatModel | None = None, thresholds: Thresholds | None = None
) -> Judge:
    """A judge by name; ``llm`` needs ``model`` (an endpoint to ask)."""
    key = name.strip().lower()
    if key == "refusal":
        return RefusalJudge(thresholds)
    if key == "heuristic":
        return HeuristicJudge(thresholds)
    if key == "llm":
        if model is None:
            raise InvalidRequest(
                "The llm judge needs an endpoint to ask; pass one with --endpoint."
            )
        return LLMJudge(model, thresholds=thresholds)
    raise InvalidRequest(f"Unknown judge {name!r}; use one of: {', '.join(JUDGE_NAMES)}.")


def read_cases(path: str | Path) -> list[dict[str, Any]]:
    """Input lines, validated; blank lines are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InvalidRequest(f"Input file {path} does not exist.") from None
    cases = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            case = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"{path}:{number} is not valid JSON: {exc.msg}.") from None
        if not isinstance(case, dict):
            raise InvalidRequest(f"{path}:{number} must be a JSON object.")
        for key in ("objective", "response"):
            if not isinstance(case.get(key), str):
                raise InvalidRequest(f'{path}:{number} needs a string "{key}".')
        if case.get("risk_category") is not None:
            try:
                RiskCategory.parse(str(case["risk_category"]))
            except InvalidRequest as exc:
                raise InvalidRequest(f"{path}:{number}: {exc.message}") from None
        cases.append(case)
    return cases


async def evaluate_cases(judge: Judge, cases: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One output record per case, in order."""
    records = []
    for case in cases:
        raw = case.get("risk_category")
        category = RiskCategory.parse(str(raw)) if raw is not None else None
        conversation = exchange(case["objective"], case["response"])
        verdict = await assess(judge, case["objective"], conversation, category)
        records.append({**case, **verdict.to_dict()})
    return records


async def evaluate_file_async(
    judge: Judge, input_path: str | Path, output_path: str | Path | None = None
) -> list[dict[str, Any]]:
    records = await evaluate_cases(judge, read_cases(input_path))
    if output_path is not None:
        with Path(output_path).open("w", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return records


def evaluate_file(
    judge: Judge, input_path: str | Path, output_path: str | Path | None = None
) -> list[dict[str, Any]]:
    """Judge every line of ``input_path``; write JSONL to ``output_path`` if given, and return
    the records (the CLI prints them when there is no output file)."""
    return asyncio.run(evaluate_file_async(judge, input_path, output_path))
