"""PII detection with validated regular expressions, for the ``pii`` guardrail.

Databricks detects PII with a model. Bastion cannot ship one: Presidio's recognisers need spaCy
language models, and those cannot be downloaded where Bastion is built and run. So this module
finds the structured identifiers that a pattern plus a checksum can find reliably, and nothing
else (no names, street addresses or free-text dates):

``EMAIL_ADDRESS``
    ``local@domain.tld``, with RFC 5321 length limits on the parts.
``PHONE_NUMBER``
    NANP numbers written with separators (``(415) 555-0123``, ``+1 415.555.0123``; valid area
    code and exchange), and ``+``-prefixed international numbers with 8-15 digits. An unbroken run
    of digits is not taken for a phone number: it is more often an order number or an id.
``CREDIT_CARD``
    13-19 digits, unbroken or grouped by one kind of separator (4-4-4-4[-1..4], 4-6-5, 4-6-4),
    a card-network first digit (2-6) and a valid Luhn checksum.
``US_SSN``
    ``AAA-GG-SSSS`` (dashes or spaces): area not 000, 666 or 9xx, group not 00, serial not 0000.
``IP_ADDRESS``
    Dotted-quad IPv4 without leading zeros (not after a word such as ``version``), and IPv6 as
    accepted by :mod:`ipaddress` (a whole run of hex digits, colons and dots, not part of a
    word), with at least four hex digits (so ``a::b`` in C++ is not one).
``IBAN_CODE``
    Upper-case IBANs of the registered length for their country, with a valid mod-97 checksum.

A match can only begin where a run of its characters begins, so a scan stays linear in the
length of the text (no back-tracking blow-up on long runs of digits or letters).

Masking writes ``<KIND>`` in place of each match, Presidio's default (e.g. ``<EMAIL_ADDRESS>``):
Databricks does not document the text its ``MASK`` behaviour writes.

>>> [(m.kind.value, m.start, m.end) for m in find_pii("mail bo@example.com")]
[('EMAIL_ADDRESS', 5, 19)]
>>> mask_pii("call +1 (415) 555-0123 now")
'call <PHONE_NUMBER> now'
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class PiiKind(StrEnum):
    """The kinds of PII found, named as Presidio names its entities."""

    EMAIL_ADDRESS = "EMAIL_ADDRESS"
    PHONE_NUMBER = "PHONE_NUMBER"
    CREDIT_CARD = "CREDIT_CARD"
    US_SSN = "US_SSN"
    IP_ADDRESS = "IP_ADDRESS"
    IBAN_CODE = "IBAN_CODE"

    @property
    def placeholder(self) -> str:
        """The text that masking writes in place of a match, e.g. ``<EMAIL_ADDRESS>``."""
        return f"<{self.value}>"


@dataclass(frozen=True, slots=True)
class PiiMatch:
    """One piece of PII: its kind and where it lies in the text (``text[start:end]``)."""

    kind: PiiKind
    start: int
    end: int


# The scan is anchored: e-mail addresses are looked for around each "@", IPv6 addresses around
# each ":", international phone numbers from each "+", and everything else only within the runs
# of digits and separators (one pass over the text), so a text without digits costs almost
# nothing. Patterns check what precedes them with a look-behind, so that a match can only start
# at the start of a run; they are tried at given positions, with ``pos``/``endpos``.
_LOCAL_PART_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
    r"(?![A-Za-z0-9-])"
)
_DIGIT_RUN = re.compile(r"\d[\d .()-]*")
_DIGITS = "0123456789"
# NANP: optional +1, area code in parentheses or followed by a separator, then NXX-XXXX.
_NANP = re.compile(
    r"(?<![\w+.-])(?:\+?1[ .-]?)?(?:\(([2-9]\d\d)\)[ .-]?|([2-9]\d\d)[ .-])"
    r"([2-9]\d\d)[ .-]\d{4}(?![\w-]|[ .]\d)"
)
# International: + country code, then digit groups split by one separator or a (area) part.
# Each group is preceded by something that is not a digit, so the parse is unambiguous.
_INTL_PHONE = re.compile(
    r"\+(?<![\w+]\+)[1-9]\d*(?:(?:[ .-]|[ .-]?\(\d{1,4}\)[ .-]?)\d{2,})*(?![\w]|[ .-]\d)"
)
_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-]|[ ]\d)")
_SSN = re.compile(r"(?<![\w-])(\d\d\d)([- ])(\d\d)\2(\d{4})(?![\w-]|[ ]\d)")
_IPV4 = re.compile(r"(?<![\w.])\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\w]|\.\d)")
_VERSION_BEFORE = re.compile(r"\b(?:version|release|build|firmware|ver\.?|rev\.?|v)\s*$", re.I)
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")
_IPV6_RUN = re.compile(r"[0-9A-Fa-f:.]*")
_IPV6_MAX = 45  # characters in the longest IPv6 address (with an embedded IPv4 address)
_HEX_DIGIT = re.compile(r"[0-9A-Fa-f]")
_WORD_CHAR = re.compile(r"\w")
_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Z]{2}\d\d(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])"
)
_ASCII_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")

# ISO 13616 registry: the length of an IBAN in each country that issues them.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27,
    "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28,
    "PS": 29, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31, "SD": 18,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip

# A digit doubled, with the digits of the result added (the Luhn step).
_LUHN_DOUBLED = {str(digit): (2 * digit) % 10 + (2 * digit) // 10 for digit in range(10)}
# Numbers the US Social Security Administration voided after they were published.
_VOID_SSNS = frozenset({"078051120", "219099999"})


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn checksum that card numbers carry."""
    total = sum(map(int, digits[-1::-2])) + sum(map(_LUHN_DOUBLED.__getitem__, digits[-2::-2]))
    return total % 10 == 0


def iban_valid(compact: str) -> bool:
    """Whether an IBAN without spaces has its country's length and a valid mod-97 checksum."""
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _card_layout_ok(number: str) -> bool:
    """Unbroken, or grouped 4-4-4-4[-1..4], 4-6-5 or 4-6-4 by one kind of separator."""
    if number.isdigit():
        return True
    separator = " " if " " in number else "-"
    if separator == " " and "-" in number:
        return False
    sizes = [len(group) for group in number.split(separator)]
    if sizes in ([4, 6, 5], [4, 6, 4]):
        return True
    return len(sizes) >= 4 and all(size == 4 for size in sizes[:-1]) and 1 <= sizes[-1] <= 4


_Found = list[tuple[int, int, int, PiiKind]]  # (start, -end, tie-break rank, kind)

# Ranks break ties between matches with the same span: the lower rank wins.
_RANKS = {
    kind: rank
    for rank, kind in enumerate(
        (
            PiiKind.EMAIL_ADDRESS,
            PiiKind.IBAN_CODE,
            PiiKind.CREDIT_CARD,
            PiiKind.US_SSN,
            PiiKind.PHONE_NUMBER,
            PiiKind.IP_ADDRESS,
        )
    )
}


def _add(found: _Found, kind: PiiKind, start: int, end: int) -> None:
    found.append((start, -end, _RANKS[kind], kind))


def _find_emails(text: str, found: _Found) -> None:
    at = text.find("@")
    floor = 0
    while at != -1:
        # The local part starts where its run of characters does, at most 64 before the "@".
        start = at
        while start > floor and at - start <= 64 and text[start - 1] in _LOCAL_PART_CHARS:
            start -= 1
        match = _EMAIL.match(text, start) if at - start <= 64 else None
        if match is not None:
            _add(found, PiiKind.EMAIL_ADDRESS, *match.span())
            floor = match.end()
            at = text.find("@", floor)
        else:
            at = text.find("@", at + 1)


def _find_in_digit_run(text: str, start: int, end: int, found: _Found) -> None:
    """Cards, SSNs, NANP phones, IPv4 and IBANs that lie in (or begin just before) a run."""
    run = text[start:end]
    digit_count = len(run) - sum(run.count(separator) for separator in " .()-")
    stop = end + 2  # room for the look-aheads
    if start >= 2 and text[start - 2] in _ASCII_UPPER and text[start - 1] in _ASCII_UPPER:
        match = _IBAN.match(text, start - 2)
        if match is not None and iban_valid(match.group().replace(" ", "")):
            _add(found, PiiKind.IBAN_CODE, *match.span())
    if digit_count >= 13:
        for match in _CARD.finditer(text, start, stop):
            number = match.group()
            digits = number.replace(" ", "").replace("-", "")
            if digits[0] in "23456" and _card_layout_ok(number) and luhn_valid(digits):
                _add(found, PiiKind.CREDIT_CARD, *match.span())
    if digit_count >= 9 and ("-" in run or " " in run):
        for match in _SSN.finditer(text, start, stop):
            area, _, group, serial = match.groups()
            if (
                area != "000"
                and area != "666"
                and area[0] != "9"
                and group != "00"
                and serial != "0000"
                and area + group + serial not in _VOID_SSNS
            ):
                _add(found, PiiKind.US_SSN, *match.span())
    if digit_count >= 10:
        # "+1 (" may stand before the run.
        for match in _NANP.finditer(text, max(0, start - 4), stop):
            area = match.group(1) or match.group(2)
            if area[1:] != "11" and match.group(3)[1:] != "11":
                _add(found, PiiKind.PHONE_NUMBER, *match.span())
    if digit_count >= 4 and run.count(".") >= 3:
        for match in _IPV4.finditer(text, start, stop):
            octets = match.group().split(".")
            if all(
                (octet == "0" or octet[0] != "0") and int(octet) <= 255 for octet in octets
            ) and not _VERSION_BEFORE.search(text, max(0, match.start() - 10), match.start()):
                _add(found, PiiKind.IP_ADDRESS, *match.span())


def _find_international_phones(text: str, found: _Found) -> None:
    for match in _INTL_PHONE.finditer(text):
        digits = sum(char.isdigit() for char in match.group())
        if 8 <= digits <= 15:
            _add(found, PiiKind.PHONE_NUMBER, *match.span())


def _find_ipv6(text: str, found: _Found) -> None:
    colon = text.find(":")
    while colon != -1:
        # The run of hex digits, colons and dots around the colon, not inside a longer word.
        start, floor = colon, max(0, colon - _IPV6_MAX)
        while start > floor and text[start - 1] in _IPV6_CHARS:
            start -= 1
        run = _IPV6_RUN.match(text, colon)
        end = run.end() if run is not None else colon + 1
        colon = text.find(":", end)
        candidate = text[start:end].rstrip(".")
        if (
            len(candidate) > _IPV6_MAX
            or (start > 0 and text[start - 1] in _IPV6_CHARS)
            or candidate.count(":") < 2
            or (start > 0 and _WORD_CHAR.match(text, start - 1))
            or (end < len(text) and _WORD_CHAR.match(text, end))
            or len(_HEX_DIGIT.findall(candidate)) < 4
        ):
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        _add(found, PiiKind.IP_ADDRESS, start, start + len(candidate))


def find_pii(text: str) -> list[PiiMatch]:
    """The PII in ``text``: non-overlapping matches, in order of position.

    Where two candidates overlap, the one that starts first wins, then the longer one.

    >>> find_pii("SSN 123-45-6789, card 4111 1111 1111 1111")  # doctest: +NORMALIZE_WHITESPACE
    [PiiMatch(kind=<PiiKind.US_SSN: 'US_SSN'>, start=4, end=15),
     PiiMatch(kind=<PiiKind.CREDIT_CARD: 'CREDIT_CARD'>, start=22, end=41)]
    """
    candidates: _Found = []
    if "@" in text:
        _find_emails(text, candidates)
    if any(digit in text for digit in _DIGITS):
        for run in _DIGIT_RUN.finditer(text):
            _find_in_digit_run(text, run.start(), run.end(), candidates)
        if "+" in text:
            _find_international_phones(text, candidates)
    if ":" in text:
        _find_ipv6(text, candidates)
    if not candidates:
        return []
    candidates.sort()
    found: list[PiiMatch] = []
    covered = 0
    for start, negative_end, _, kind in candidates:
        if start >= covered:
            found.append(PiiMatch(kind, start, -negative_end))
            covered = -negative_end
    return found


def mask_pii(text: str, matches: Sequence[PiiMatch] | None = None) -> str:
    """``text`` with each PII match replaced by its placeholder, e.g. ``<US_SSN>``.

    ``matches`` are those :func:`find_pii` returned for ``text`` (found again when omitted).
    Text without PII comes back as the same object.
    """
    if matches is None:
        matches = find_pii(text)
    if not matches:
        return text
    parts: list[str] = []
    position = 0
    for match in matches:
        parts.append(text[position : match.start])
        parts.append(match.kind.placeholder)
        position = match.end
    parts.append(text[position:])
    return "".join(parts)
