"""Same-origin checks for the browser-facing parts (sign-in, sign-out, the app proxy)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit


def own_origin(scheme: str, headers: Mapping[str, str]) -> str | None:
    host = headers.get("host")
    if not host:
        return None
    web = "https" if scheme in ("https", "wss") else "http"
    return f"{web}://{host.lower()}"


def origin_allowed(
    origin: str | None, scheme: str, headers: Mapping[str, str], allowed: Iterable[str] = ()
) -> bool:
    """``origin`` (a browser's ``Origin`` header) is this server's own, or configured."""
    if origin is None:
        return False
    origin = origin.strip().lower().rstrip("/")
    return origin == own_origin(scheme, headers) or origin in {
        a.strip().lower().rstrip("/") for a in allowed
    }


def safe_next(value: str | None, default: str = "/") -> str:
    """A same-origin relative path to go to after signing in; anything else is ``default``.

    >>> safe_next("/apps/dashboard/?page=ops"), safe_next("//evil.example/"), safe_next("https://x")
    ('/apps/dashboard/?page=ops', '/', '/')
    """
    if not value or len(value) > 2048 or not value.startswith("/") or value.startswith("//"):
        return default
    if "\\" in value or any(ord(c) < 0x21 or c == "\x7f" for c in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value
