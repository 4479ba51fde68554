"""Red teaming: attack strategies, objectives, judges and Azure-format scorecards.

The offline core the scanner builds on; every model it talks to (target, attacker, LLM judge)
is a :class:`ChatModel`, in practice a Bastion serving endpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.redteam.attack import assess, run_attack
from bastion.redteam.evaluate import evaluate_file, make_judge
from bastion.redteam.judges import HeuristicJudge, Judge, KeywordRefusalJudge, LLMJudge
from bastion.redteam.models import (
    DEFAULT_RISK_CATEGORIES,
    AttackResult,
    ChatModel,
    Complexity,
    Message,
    Objective,
    RiskCategory,
    Thresholds,
    Verdict,
)
from bastion.redteam.objectives import builtin_objectives, load_seed_prompts, select_objectives
from bastion.redteam.refusal import detect_refusal
from bastion.redteam.scorecard import build_scorecard, diff_scans, gate
from bastion.redteam.strategies import AttackStrategy, StrategyRegistry, compose

if TYPE_CHECKING:
    from bastion.redteam.trained import EscalatingJudge, ObjectiveJudge, RefusalJudge

_TRAINED = ("EscalatingJudge", "ObjectiveJudge", "RefusalJudge")


def __getattr__(name: str) -> Any:
    """The trained judges, imported on first use (their feature tables take a while)."""
    if name in _TRAINED:
        from bastion.redteam import trained

        return getattr(trained, name)
    raise AttributeError(f"module 'bastion.redteam' has no attribute {name!r}")


__all__ = [
    "DEFAULT_RISK_CATEGORIES",
    "AttackResult",
    "AttackStrategy",
    "ChatModel",
    "Complexity",
    "EscalatingJudge",
    "HeuristicJudge",
    "Judge",
    "KeywordRefusalJudge",
    "LLMJudge",
    "Message",
    "Objective",
    "ObjectiveJudge",
    "RefusalJudge",
    "RiskCategory",
    "StrategyRegistry",
    "Thresholds",
    "Verdict",
    "assess",
    "build_scorecard",
    "builtin_objectives",
    "compose",
    "detect_refusal",
    "diff_scans",
    "evaluate_file",
    "gate",
    "load_seed_prompts",
    "make_judge",
    "run_attack",
    "select_objectives",
]
