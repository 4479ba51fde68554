"""AI Gateway guardrails: the safety filter, PII blocking and masking, and invalid keywords.

Pure functions over text, with no I/O: the gateway parses an endpoint's ``ai_gateway.guardrails``
block once with :func:`parse_guardrails` and calls :func:`check` on each request's input and each
response's output. An endpoint without guardrails parses to None and costs nothing per request.
"""

from __future__ import annotations

from bastion.serving.guardrails.engine import Finding, GuardrailName, GuardrailOutcome, Side, check
from bastion.serving.guardrails.pii import PiiKind, PiiMatch, find_pii, mask_pii
from bastion.serving.guardrails.policy import (
    MAX_INVALID_KEYWORDS,
    GuardrailPolicy,
    Guardrails,
    PiiBehavior,
    parse_guardrails,
)
from bastion.serving.guardrails.safety import HazardCategory, classify_safety

__all__ = [
    "MAX_INVALID_KEYWORDS",
    "Finding",
    "GuardrailName",
    "GuardrailOutcome",
    "GuardrailPolicy",
    "Guardrails",
    "HazardCategory",
    "PiiBehavior",
    "PiiKind",
    "PiiMatch",
    "Side",
    "check",
    "classify_safety",
    "find_pii",
    "mask_pii",
    "parse_guardrails",
]
