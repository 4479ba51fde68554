"""Apply one side's guardrail policy to the texts of a request or a response.

The order follows Databricks: the safety filter and invalid keywords block; then PII is blocked
or masked. The first guardrail that blocks decides the outcome (later ones are not run), and a
blocked outcome's message never repeats the text that was matched, so PII and blocked keywords
do not leak into error messages or logs.

>>> policy = GuardrailPolicy(pii=PiiBehavior.MASK)
>>> check(policy, ["write to ann@example.com"]).texts
('write to <EMAIL_ADDRESS>',)
>>> check(GuardrailPolicy(pii=PiiBehavior.BLOCK), ["ann@example.com"]).reason
"The input was blocked by the endpoint's guardrails: PII (EMAIL_ADDRESS)."
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from bastion.serving.guardrails.pii import find_pii, mask_pii
from bastion.serving.guardrails.policy import GuardrailPolicy, PiiBehavior
from bastion.serving.guardrails.safety import classify_safety

GuardrailName = Literal["safety", "invalid_keywords", "pii"]
Side = Literal["input", "output"]


@dataclass(frozen=True, slots=True)
class Finding:
    """What a guardrail found.

    ``category`` is the hazard code for ``safety`` (``"S9"``), the PII kind for ``pii``
    (``"EMAIL_ADDRESS"``) and the configured keyword for ``invalid_keywords``; ``label`` is
    the hazard's name, the PII kind, or ``"invalid keyword"``.
    """

    guardrail: GuardrailName
    category: str
    label: str


@dataclass(frozen=True, slots=True)
class GuardrailOutcome:
    """The result of :func:`check`.

    ``texts`` are the texts to pass on: masked copies where PII was masked, the very same
    objects otherwise (``modified`` says whether any changed). ``reason`` is the message to
    return to the client when ``blocked``.
    """

    blocked: bool
    reason: str | None
    findings: tuple[Finding, ...]
    texts: tuple[str, ...]
    modified: bool = False


def check(
    policy: GuardrailPolicy, texts: Sequence[str], *, side: Side = "input"
) -> GuardrailOutcome:
    """Apply ``policy`` to ``texts`` (e.g. the messages of a request, or the choices of a reply).

    ``side`` only words the message: "The input was blocked ..." or "The output was ...".
    """
    original = tuple(texts)
    if policy.safety:
        for text in original:
            hazard = classify_safety(text)
            if hazard is not None:
                return _blocked(
                    side,
                    f"unsafe content ({hazard})",
                    (Finding("safety", hazard.code, hazard.name),),
                    original,
                )
    if policy.keyword_pattern is not None:
        for text in original:
            keyword = policy.find_keyword(text)
            if keyword is not None:
                return _blocked(
                    side,
                    "a blocked keyword",
                    (Finding("invalid_keywords", keyword, "invalid keyword"),),
                    original,
                )
    if policy.pii is PiiBehavior.NONE:
        return GuardrailOutcome(False, None, (), original)
    matches = [find_pii(text) for text in original]
    kinds = list(dict.fromkeys(match.kind for found in matches for match in found))
    if not kinds:
        return GuardrailOutcome(False, None, (), original)
    findings = tuple(Finding("pii", kind.value, kind.value) for kind in kinds)
    if policy.pii is PiiBehavior.BLOCK:
        return _blocked(
            side, f"PII ({', '.join(kind.value for kind in kinds)})", findings, original
        )
    masked = tuple(mask_pii(text, found) for text, found in zip(original, matches, strict=True))
    return GuardrailOutcome(False, None, findings, masked, modified=True)


def _blocked(
    side: Side, what: str, findings: tuple[Finding, ...], texts: tuple[str, ...]
) -> GuardrailOutcome:
    reason = f"The {side} was blocked by the endpoint's guardrails: {what}."
    return GuardrailOutcome(True, reason, findings, texts)
