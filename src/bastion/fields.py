"""Bounded inputs: integers and nesting that every API accepts only within range.

Numbers reach SQLite (64-bit), PostgreSQL (32/64-bit columns), ``datetime`` and Arrow, each
with its own limits, and nested text reaches recursive parsers. Every API field and path part
is bounded here, once, so that what does not fit is a 400 naming the field — never an
overflow deep inside a store.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from bastion.errors import InvalidRequest

MAX_INT32 = 2**31 - 1
MAX_INT64 = 2**63 - 1
#: 9999-12-31T23:59:59.999Z, the last instant ``datetime`` and Delta timestamps hold.
MAX_EPOCH_MS = 253_402_300_799_999
#: Deepest nesting of brackets in a SQL statement or a type (``array<array<...>>``).
MAX_NESTING = 64

Int32 = Annotated[int, Field(ge=-(2**31), le=MAX_INT32)]
NonNegativeInt32 = Annotated[int, Field(ge=0, le=MAX_INT32)]
PositiveInt32 = Annotated[int, Field(ge=1, le=MAX_INT32)]
Int64 = Annotated[int, Field(ge=-(2**63), le=MAX_INT64)]
EpochMillis = Annotated[int, Field(ge=0, le=MAX_EPOCH_MS)]


def parse_id(text: str, *, maximum: int = MAX_INT32) -> int | None:
    """The number ``text`` spells in ASCII digits, if it is one and within ``maximum``.

    >>> parse_id("42"), parse_id("٣"), parse_id("²"), parse_id("9" * 30)
    (42, None, None, None)
    """
    if not (isinstance(text, str) and text.isascii() and text.isdigit()) or len(text) > 19:
        return None
    value = int(text)
    return value if value <= maximum else None


def check_nesting(text: str, what: str, *, opening: str = "(", closing: str = ")") -> None:
    """Refuse text nested deeper than :data:`MAX_NESTING` (outside quoted strings)."""
    depth = 0
    quote: str | None = None
    for char in text:
        if quote is not None:
            if char == quote:
                quote = None
            continue
        if char in "'\"`":
            quote = char
        elif char in opening:
            depth += 1
            if depth > MAX_NESTING:
                raise InvalidRequest(
                    f"The {what} is nested more than {MAX_NESTING} levels deep; flatten it."
                )
        elif char in closing:
            depth = max(depth - 1, 0)
