"""Asking the agent *as the signed-in user*: the only code that talks to Bastion.

Bastion's app proxy signs the user in and forwards ``X-Forwarded-Access-Token``, a short-lived
token that is that user, narrowed to the app's ``user_api_scopes``. The agent's endpoint
therefore authorizes, rate-limits and logs each question as the user who asked it — never as
the app. Never fall back to the app's own credentials (``BASTION_CLIENT_ID``/``SECRET``) for a
user's request.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

TOKEN_HEADER = "x-forwarded-access-token"


class AskError(Exception):
    """The question could not be answered; the message says why, for the user."""


def user_token(headers: Mapping[str, str]) -> str | None:
    """The forwarded user token from the request's headers (any case), or None."""
    for name, value in headers.items():
        if name.lower() == TOKEN_HEADER and value:
            return value
    return None


def ask(
    host: str,
    token: str,
    endpoint: str,
    question: str,
    *,
    transport: httpx.BaseTransport | None = None,
) -> str:
    """The agent's answer to ``question``, asked with the user's ``token``."""
    with httpx.Client(base_url=host.rstrip("/"), transport=transport, timeout=120) as http:
        reply = http.post(
            "/serving-endpoints/chat/completions",
            headers={"Authorization": f"Bearer {token}"},
            json={"model": endpoint, "messages": [{"role": "user", "content": question}]},
        )
    if reply.status_code in (401, 403):
        raise AskError("You may not use this agent: ask its owner for CAN_QUERY.")
    if reply.status_code == 429:
        raise AskError("Too many questions: the agent's rate limit was reached; try later.")
    if reply.status_code != 200:
        raise AskError(f"The agent failed ({reply.status_code}): {reply.text[:300]}")
    choices = reply.json().get("choices") or [{}]
    return str((choices[0].get("message") or {}).get("content") or "")
