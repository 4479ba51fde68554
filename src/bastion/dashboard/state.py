"""The whole view state — page, filters, range, selected row, time zone — as URL query
parameters, so that a link opens the same view for someone else (through *their* grants).

>>> state = ViewState.from_params({"page": "ops", "period": "24h", "tz": "Asia/Tokyo"})
>>> state.to_params()["tz"]
'Asia/Tokyo'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

PAGES = ("ops", "risk", "trace", "models", "audit")
PERIODS: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
STATUSES = ("all", "ok", "error")
SCAN_TYPES = ("all", "normal", "redteam", "eval")
_TEXT = re.compile(r"^[\w .:@+\-/]{0,200}$")
_ID = re.compile(r"^[A-Za-z0-9_\-:.]{0,128}$")


@lru_cache(maxsize=1)
def time_zones() -> frozenset[str]:
    return frozenset(available_timezones()) | {"UTC"}


@dataclass(frozen=True)
class ViewState:
    page: str = "ops"
    period: str = "24h"
    #: An explicit range (ISO 8601, UTC) instead of the period ending now.
    start: str = ""
    end: str = ""
    endpoint: str = ""
    model_version: str = ""
    status: str = "all"
    requester: str = ""
    environment: str = ""
    scan_type: str = "all"
    q: str = ""
    tz: str = "UTC"
    row: str = ""
    trace: str = ""
    scan: str = ""
    scan_b: str = ""
    sql: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> ViewState:
        """Read the URL's parameters; anything malformed falls back to its default."""
        values: dict[str, str] = {}
        for field in fields(cls):
            raw = params.get(field.name)
            if isinstance(raw, list):
                raw = raw[0] if raw else None
            if raw is None:
                continue
            text = str(raw)[:300]
            if _valid(field.name, text):
                values[field.name] = text
        return cls(**values)

    def to_params(self) -> dict[str, str]:
        """Only what differs from the defaults, so links stay short."""
        default = ViewState()
        return {k: v for k, v in asdict(self).items() if v != getattr(default, k)}

    def with_(self, **changes: str) -> ViewState:
        return replace(self, **changes)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def window(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        """[start, end) in UTC: the explicit range, or the period ending now."""
        if self.start and self.end:
            return _parse(self.start), _parse(self.end)
        end = (now or datetime.now(UTC)).replace(microsecond=0)
        return end - PERIODS[self.period], end

    def previous_window(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        """The window of the same length just before :meth:`window`."""
        start, end = self.window(now)
        return start - (end - start), start

    def bucket(self, now: datetime | None = None) -> str:
        """The time-series bucket for the window's length."""
        start, end = self.window(now)
        length = end - start
        if length <= timedelta(hours=2):
            return "MINUTE"
        if length <= timedelta(days=3):
            return "HOUR"
        return "DAY"


def _parse(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _valid(name: str, text: str) -> bool:
    if name == "page":
        return text in PAGES
    if name == "period":
        return text in PERIODS
    if name == "status":
        return text in STATUSES or (text.isdigit() and 100 <= int(text) <= 599)
    if name == "scan_type":
        return text in SCAN_TYPES
    if name == "tz":
        return text in time_zones()
    if name in ("start", "end"):
        try:
            _parse(text)
        except ValueError:
            return False
        return True
    if name == "sql":
        return text in ("", "1")
    if name in ("row", "trace", "scan", "scan_b"):
        return bool(_ID.match(text))
    if name == "q":
        return "\x00" not in text
    return bool(_TEXT.match(text))
