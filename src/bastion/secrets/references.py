"""``{{secrets/<scope>/<key>}}``: how configs point at a secret without containing it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bastion.errors import InvalidRequest

_REFERENCE = re.compile(
    r"^\{\{\s*secrets/([A-Za-z0-9_.\-]{1,128})/([A-Za-z0-9_.\-]{1,128})\s*\}\}$"
)
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


@dataclass(frozen=True)
class SecretReference:
    scope: str
    key: str

    def __str__(self) -> str:
        return "{{secrets/" + self.scope + "/" + self.key + "}}"


def is_reference(text: object) -> bool:
    return isinstance(text, str) and _REFERENCE.match(text.strip()) is not None


def parse_reference(text: str, what: str = "value") -> SecretReference:
    """Parse ``{{secrets/scope/key}}``; anything else (a plaintext key) is refused.

    >>> parse_reference("{{secrets/openai/api_key}}")
    SecretReference(scope='openai', key='api_key')
    """
    match = _REFERENCE.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise InvalidRequest(
            f"The {what} must be a secret reference like {{{{secrets/<scope>/<key>}}}}; "
            "store the value with `bastion secrets put <scope> <key>` first."
        )
    return SecretReference(match.group(1), match.group(2))


def validate_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidRequest(
            f"Invalid secret {what} {name!r}: use 1-128 letters, digits, '_', '-' or '.'."
        )
    return name
