"""``bastion redteam evaluate``: run a judge over a JSONL file of responses.

Each input line is ``{"objective": ..., "response": ..., "risk_category"?: ...}``; each
output line carries the verdict (``refusal``, ``severity``, ``attack_success``, ``reason``)
next to the input fields. Verdicts go through :func:`bastion.redteam.attack.assess`, the
same call the scanner makes.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bastion.errors import InvalidRequest
from bastion.redteam.attack import assess
from bastion.redteam.judges import HeuristicJudge, Judge, KeywordRefusalJudge, LLMJudge, exchange
from bastion.redteam.models import ChatModel, RiskCategory, Thresholds

if TYPE_CHECKING:
    from bastion.redteam.trained import Calibration


class JudgeFactory(Protocol):
    def __call__(
        self,
        *,
        model: ChatModel | None,
        thresholds: Thresholds | None,
        calibration: Calibration | None,
    ) -> Judge: ...


def _objective(
    *, model: ChatModel | None, thresholds: Thresholds | None, calibration: Calibration | None
) -> Judge:
    from bastion.redteam.trained import ObjectiveJudge

    return ObjectiveJudge(thresholds, calibration=calibration)


def _refusal(
    *, model: ChatModel | None, thresholds: Thresholds | None, calibration: Calibration | None
) -> Judge:
    from bastion.redteam.trained import RefusalJudge

    return RefusalJudge(thresholds, calibration=calibration)


def _keyword(
    *, model: ChatModel | None, thresholds: Thresholds | None, calibration: Calibration | None
) -> Judge:
    return KeywordRefusalJudge(thresholds)


def _heuristic(
    *, model: ChatModel | None, thresholds: Thresholds | None, calibration: Calibration | None
) -> Judge:
    return HeuristicJudge(thresholds)


def _llm(
    *, model: ChatModel | None, thresholds: Thresholds | None, calibration: Calibration | None
) -> Judge:
    if model is None:
        raise InvalidRequest("The llm judge needs an endpoint to ask; pass one with --endpoint.")
    return LLMJudge(model, thresholds=thresholds)


BUILTIN_JUDGES: tuple[tuple[str, JudgeFactory], ...] = (
    ("objective", _objective),
    ("refusal", _refusal),
    ("keyword", _keyword),
    ("heuristic", _heuristic),
    ("llm", _llm),
)
"""The built-in judges in order: the trained ones first, then the baselines and the LLM."""

TRAINED_JUDGES = frozenset({"objective", "refusal"})


def register_judges(register: Callable[[str, JudgeFactory], None]) -> None:
    """The built-ins' registration hook: the same signature plugins implement (a module
    exposing ``register_judges(register)`` under the ``bastion.redteam`` entry-point group)."""
    for name, factory in BUILTIN_JUDGES:
        register(name, factory)


@functools.lru_cache(maxsize=1)
def judge_registry() -> dict[str, JudgeFactory]:
    """Built-in judges, then every installed plugin's ``register_judges`` hook."""
    registry: dict[str, JudgeFactory] = {}

    def register(name: str, factory: JudgeFactory) -> None:
        key = name.strip().lower()
        if key in registry:
            raise InvalidRequest(f"A judge named {name!r} is already registered.")
        registry[key] = factory

    register_judges(register)
    for entry in entry_points(group="bastion.redteam"):
        hook = getattr(entry.load(), "register_judges", None)
        if callable(hook):
            hook(register)
    return registry


JUDGE_NAMES = tuple(name for name, _ in BUILTIN_JUDGES)


def judge_names() -> tuple[str, ...]:
    return tuple(judge_registry())


def make_judge(
    name: str,
    *,
    model: ChatModel | None = None,
    thresholds: Thresholds | None = None,
    calibration: Calibration | Mapping[str, Any] | None = None,
    escalate_to: ChatModel | None = None,
    escalate_below: float | None = None,
) -> Judge:
    """A judge by name; ``llm`` needs ``model`` (an endpoint to ask). ``calibration`` (a
    :class:`~bastion.redteam.trained.Calibration` or its JSON) must be for this judge. A
    trained judge given ``escalate_to`` (an endpoint) hands verdicts below
    ``escalate_below`` confidence to an LLM judge on it."""
    key = name.strip().lower()
    factory = judge_registry().get(key)
    if factory is None:
        raise InvalidRequest(f"Unknown judge {name!r}; use one of: {', '.join(judge_names())}.")
    cal = None
    if calibration is not None:
        from bastion.redteam.trained import Calibration

        cal = (
            calibration
            if isinstance(calibration, Calibration)
            else Calibration.from_json(calibration)
        )
        if cal.judge != key:
            raise InvalidRequest(f"The judge calibration is for {cal.judge}, not {key}.")
    judge = factory(model=model, thresholds=thresholds, calibration=cal)
    if escalate_to is not None and key in TRAINED_JUDGES:
        from bastion.redteam.trained import DEFAULT_ESCALATE_BELOW, EscalatingJudge

        below = DEFAULT_ESCALATE_BELOW if escalate_below is None else escalate_below
        fallback = LLMJudge(escalate_to, thresholds=thresholds)
        return EscalatingJudge(judge, fallback, below=below)
    return judge


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
