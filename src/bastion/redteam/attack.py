"""Running one attack: objective × strategy → conversation with the target → verdict.

This is the code path the scanner drives for every row, and the one ``bastion redteam
evaluate`` reuses (via :func:`assess`) to judge responses from a file.
"""

from __future__ import annotations

from collections.abc import Sequence

from bastion.errors import InvalidRequest
from bastion.redteam.judges import Judge
from bastion.redteam.models import (
    AttackResult,
    ChatModel,
    Conversation,
    Message,
    Objective,
    RiskCategory,
    Verdict,
)
from bastion.redteam.strategies import AttackStrategy


async def assess(
    judge: Judge,
    objective: str,
    conversation: Sequence[Message],
    risk_category: RiskCategory | None,
) -> Verdict:
    """Judge one conversation. Every verdict in Bastion, scan or file, comes through here."""
    return await judge.evaluate(objective, conversation, risk_category)


def user_turn(objective: Objective, prompt: str) -> Message:
    """The user message for a single-turn attack; an objective's context (the XPIA document,
    email or tool output) follows the converted request, as Azure attaches it."""
    if objective.context:
        kind = objective.context_type or "document"
        return {"role": "user", "content": f"{prompt}\n\n<{kind}>\n{objective.context}\n</{kind}>"}
    return {"role": "user", "content": prompt}


async def run_attack(
    objective: Objective,
    strategy: AttackStrategy,
    *,
    target: ChatModel,
    judge: Judge,
    attacker: ChatModel | None = None,
    system_prompt: str | None = None,
) -> AttackResult:
    """Attack ``target`` once and judge the outcome.

    A failure anywhere (the attacker, the target, the judge) is recorded on the result as
    ``error`` with an empty verdict: it counts in totals but not in the attack-success rate.
    """
    if strategy.needs_attacker and attacker is None:
        raise InvalidRequest(f"Strategy {strategy.name!r} needs an attacker model (an endpoint).")
    conversation: Conversation = []
    try:
        if strategy.dialogue is not None:
            assert attacker is not None

            async def achieved(turns: Conversation) -> bool:
                verdict = await assess(judge, objective.text, turns, objective.risk_category)
                return verdict.attack_success is True

            conversation = await strategy.dialogue(
                objective.text,
                target=target,
                attacker=attacker,
                achieved=achieved,
                system_prompt=system_prompt,
            )
        else:
            prompt = await strategy.prepare(objective.text, attacker)
            conversation = [user_turn(objective, prompt)]
            messages = (
                [{"role": "system", "content": system_prompt}] if system_prompt else []
            ) + conversation
            conversation.append({"role": "assistant", "content": await target.complete(messages)})
        verdict = await assess(judge, objective.text, conversation, objective.risk_category)
    except Exception as exc:  # recorded on the row, never dropped
        return AttackResult(
            objective,
            strategy.name,
            strategy.complexity,
            tuple(conversation),
            None,
            f"{type(exc).__name__}: {exc}",
        )
    return AttackResult(objective, strategy.name, strategy.complexity, tuple(conversation), verdict)
