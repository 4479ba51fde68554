"""Every call this app makes to Bastion, made *as the signed-in user*.

Bastion's app proxy signs the user in and forwards ``X-Forwarded-Access-Token``, a short-lived
token that is that user, narrowed to the app's ``user_api_scopes`` (``bastion.yml``). What the
user may not see, this app cannot show them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

TOKEN_HEADER = "x-forwarded-access-token"


def user_token(headers: Mapping[str, str]) -> str | None:
    """The forwarded user token from the request's headers (any case), or None."""
    for name, value in headers.items():
        if name.lower() == TOKEN_HEADER and value:
            return value
    return None


def my_endpoints(
    host: str, token: str, *, transport: httpx.BaseTransport | None = None
) -> list[dict[str, Any]]:
    """The serving endpoints the user may see: name and state."""
    with httpx.Client(base_url=host.rstrip("/"), transport=transport, timeout=30) as http:
        reply = http.get("/api/2.0/serving-endpoints", headers={"Authorization": f"Bearer {token}"})
    reply.raise_for_status()
    return [
        {"name": e.get("name"), "ready": (e.get("state") or {}).get("ready")}
        for e in reply.json().get("endpoints") or []
    ]
