"""Three-part names: defaults, canonical case, and the text forms used in SQL commands."""

from __future__ import annotations

import re

from sqlglot import exp

from bastion.errors import InvalidRequest
from bastion.governance.securables import validate_part

DEFAULT_CATALOG = "main"
DEFAULT_SCHEMA = "default"
INFORMATION_SCHEMA = "information_schema"

# One name part: `back quoted` (`` doubles a quote) or a bare word.
PART = r"(?:`(?:[^`]|``)+`|[A-Za-z0-9_\-]+)"
DOTTED = rf"{PART}(?:\s*\.\s*{PART})*"
_PART_RE = re.compile(PART)


def qualify(parts: list[str], *, depth: int = 3) -> str:
    """Fill in ``main`` / ``default`` and return the canonical (lower-case) full name.

    >>> qualify(["T"]), qualify(["sales", "orders"]), qualify(["hr"], depth=2)
    ('main.default.t', 'main.sales.orders', 'main.hr')
    """
    if not 1 <= len(parts) <= depth:
        raise InvalidRequest(f"Invalid name {'.'.join(parts)!r}: at most {depth} parts.")
    defaults = [DEFAULT_CATALOG, DEFAULT_SCHEMA][: depth - 1]
    full = defaults[: depth - len(parts)] + parts
    return ".".join(validate_part(p, "name part") for p in full)


def table_parts(table: exp.Table) -> list[str]:
    """The written parts of a table reference, outermost first."""
    if not isinstance(table.this, exp.Identifier):
        raise InvalidRequest(f"Invalid table reference {table.sql(dialect='databricks')!r}.")
    return [p.name for p in (table.args.get("catalog"), table.args.get("db"), table.this) if p]


def split_dotted(text: str) -> list[str]:
    """``main.`my schema`.t`` → ``['main', 'my schema', 't']`` (quotes removed)."""
    parts = []
    for match in _PART_RE.finditer(text):
        part = match.group(0)
        if part.startswith("`"):
            part = part[1:-1].replace("``", "`")
        parts.append(part)
    return parts


def unquote(text: str) -> str:
    text = text.strip()
    if text.startswith("`") and text.endswith("`") and len(text) >= 2:
        return text[1:-1].replace("``", "`")
    return text
