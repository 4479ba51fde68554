"""The ``ai_gateway.guardrails`` block of an endpoint, parsed into typed policies.

The block follows Databricks (``AiGatewayGuardrails``)::

    {"input":  {"safety": true, "pii": {"behavior": "BLOCK"}, "invalid_keywords": ["..."]},
     "output": {"safety": true, "pii": {"behavior": "MASK"}}}

:func:`parse_guardrails` checks the shape once, when the configuration is written, and compiles
what the checks need, so that checking a request does no parsing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bastion.errors import InvalidRequest

MAX_INVALID_KEYWORDS = 100
_SIDES = ("input", "output")
_POLICY_KEYS = ("safety", "pii", "invalid_keywords", "valid_topics")


class PiiBehavior(StrEnum):
    """What the ``pii`` guardrail does with PII it finds."""

    NONE = "NONE"
    BLOCK = "BLOCK"
    MASK = "MASK"


@dataclass(frozen=True)
class GuardrailPolicy:
    """The guardrails for one side (input or output) of an endpoint.

    ``invalid_keywords`` match case-insensitively as whole words or phrases; whitespace inside a
    phrase matches any run of whitespace.
    """

    safety: bool = False
    pii: PiiBehavior = PiiBehavior.NONE
    invalid_keywords: tuple[str, ...] = ()
    keyword_pattern: re.Pattern[str] | None = field(
        init=False, default=None, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "keyword_pattern", compile_keywords(self.invalid_keywords))

    @property
    def enabled(self) -> bool:
        """Whether any guardrail on this side can block or change a text."""
        return self.safety or self.pii is not PiiBehavior.NONE or bool(self.invalid_keywords)

    def find_keyword(self, text: str) -> str | None:
        """The first invalid keyword (as configured) that ``text`` contains, if any.

        >>> GuardrailPolicy(invalid_keywords=("Project Falcon",)).find_keyword("PROJECT  falcon!")
        'Project Falcon'
        """
        if self.keyword_pattern is None:
            return None
        match = self.keyword_pattern.search(text.lower())
        if match is None:
            return None
        found = " ".join(match.group().split())
        return next(
            (keyword for keyword in self.invalid_keywords if keyword.lower() == found), found
        )


@dataclass(frozen=True)
class Guardrails:
    """An endpoint's guardrails; a side without any is None."""

    input: GuardrailPolicy | None = None
    output: GuardrailPolicy | None = None


def compile_keywords(keywords: tuple[str, ...]) -> re.Pattern[str] | None:
    """One alternation matching any keyword as a whole word or phrase, in lower-cased text.

    Each alternative starts with its first character and only then checks, looking back, that
    no word character comes before it: a pattern whose alternatives all start with a literal
    lets the regex engine skip quickly to the positions where one can start.
    """
    if not keywords:
        return None
    alternatives = []
    # Longest first, so that of two keywords sharing a start the longer one is reported.
    for keyword in sorted(keywords, key=len, reverse=True):
        words = keyword.lower().split()
        first = re.escape(words[0][0])
        body = r"\s+".join(re.escape(word) for word in words)
        alternatives.append(first + r"(?<!\w.)" + body[len(first) :])
    return re.compile("(?:" + "|".join(alternatives) + r")(?!\w)")


def parse_guardrails(raw: Mapping[str, Any] | None) -> Guardrails | None:
    """Parse an ``ai_gateway.guardrails`` block; None when it enables nothing.

    Raises :class:`~bastion.errors.InvalidRequest` naming the field to fix.

    >>> parse_guardrails({"input": {"pii": {"behavior": "MASK"}}}).input.pii
    <PiiBehavior.MASK: 'MASK'>
    >>> parse_guardrails({"input": {"safety": False}}) is None
    True
    """
    if raw is None:
        return None
    where = "ai_gateway.guardrails"
    if not isinstance(raw, Mapping):
        raise InvalidRequest(
            f"{where} must be an object with optional 'input' and 'output' keys; "
            f"got {type_phrase(raw)}."
        )
    _reject_unknown(where, raw, _SIDES)
    input_policy = _parse_policy(f"{where}.input", raw.get("input"))
    output_policy = _parse_policy(f"{where}.output", raw.get("output"))
    if input_policy is None and output_policy is None:
        return None
    return Guardrails(input=input_policy, output=output_policy)


def _parse_policy(where: str, raw: object) -> GuardrailPolicy | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise InvalidRequest(
            f"{where} must be an object with any of {_quoted(_POLICY_KEYS)}; "
            f"got {type_phrase(raw)}."
        )
    _reject_unknown(where, raw, _POLICY_KEYS)
    safety = raw.get("safety", False)
    if safety is None:
        safety = False
    if not isinstance(safety, bool):
        raise InvalidRequest(f"{where}.safety must be true or false; got {type_phrase(safety)}.")
    policy = GuardrailPolicy(
        safety=safety,
        pii=_parse_pii(f"{where}.pii", raw.get("pii")),
        invalid_keywords=_parse_keywords(f"{where}.invalid_keywords", raw.get("invalid_keywords")),
    )
    _check_topics(f"{where}.valid_topics", raw.get("valid_topics"))
    return policy if policy.enabled else None


def _parse_pii(where: str, raw: object) -> PiiBehavior:
    if raw is None:
        return PiiBehavior.NONE
    if not isinstance(raw, Mapping):
        raise InvalidRequest(
            f'{where} must be an object such as {{"behavior": "MASK"}}; got {type_phrase(raw)}.'
        )
    _reject_unknown(where, raw, ("behavior",))
    behavior = raw.get("behavior")
    if behavior is None:
        return PiiBehavior.NONE
    allowed = ", ".join(member.value for member in PiiBehavior)
    if not isinstance(behavior, str) or behavior not in PiiBehavior.__members__:
        raise InvalidRequest(f"{where}.behavior must be one of {allowed}; got {behavior!r}.")
    return PiiBehavior(behavior)


def _parse_keywords(where: str, raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidRequest(f"{where} must be a list of strings; got {type_phrase(raw)}.")
    if len(raw) > MAX_INVALID_KEYWORDS:
        raise InvalidRequest(
            f"{where} has {len(raw)} keywords; an endpoint allows at most "
            f"{MAX_INVALID_KEYWORDS} per side."
        )
    keywords: list[str] = []
    seen: set[str] = set()
    for index, keyword in enumerate(raw):
        if not isinstance(keyword, str):
            raise InvalidRequest(f"{where}[{index}] must be a string; got {type_phrase(keyword)}.")
        normalized = " ".join(keyword.split())
        if not normalized:
            raise InvalidRequest(
                f"{where}[{index}] is empty; remove it or give the word or phrase to block."
            )
        if normalized.casefold() not in seen:
            seen.add(normalized.casefold())
            keywords.append(normalized)
    return tuple(keywords)


def _check_topics(where: str, raw: object) -> None:
    if raw is None:
        return
    if not isinstance(raw, list):
        raise InvalidRequest(f"{where} must be a list of strings; got {type_phrase(raw)}.")
    if raw:
        raise InvalidRequest(
            f"{where} is not supported: topic moderation needs a topic-classifier model, which "
            "this gateway does not run (Databricks has deprecated valid_topics too). Remove "
            "valid_topics or leave it empty; invalid_keywords can block specific words instead."
        )


def _reject_unknown(where: str, raw: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = [key for key in raw if key not in allowed]
    if unknown:
        raise InvalidRequest(
            f"{where} has unknown key{'s' if len(unknown) > 1 else ''} "
            f"{_quoted(tuple(str(key) for key in unknown))}; allowed keys are {_quoted(allowed)}."
        )


def _quoted(names: tuple[str, ...]) -> str:
    return ", ".join(f"'{name}'" for name in names)


def type_phrase(value: object) -> str:
    """How a config error names a JSON value's type: 'a string', 'a list', 'null', ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__
