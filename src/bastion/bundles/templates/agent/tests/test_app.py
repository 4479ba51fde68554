"""The app's only Bastion call, tested without a server: `python -m pytest tests`."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import httpx
import pytest

CHAT = Path(__file__).resolve().parents[1] / "app" / "chat.py"


def _load():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("project_chat", CHAT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["project_chat"] = module
    spec.loader.exec_module(module)
    return module


def test_the_question_is_asked_with_the_users_token() -> None:
    chat = _load()
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"choices": [{"message": {"content": "Open 9-17."}}]})

    reply = chat.ask(
        "http://bastion", "user-token", "demo", "Open?", transport=httpx.MockTransport(answer)
    )
    assert reply == "Open 9-17."
    assert seen[0].headers["authorization"] == "Bearer user-token"
    assert json.loads(seen[0].content)["model"] == "demo"


def test_a_refusal_is_explained_not_raised_as_a_crash() -> None:
    chat = _load()
    denied = httpx.MockTransport(
        lambda _r: httpx.Response(403, json={"error_code": "PERMISSION_DENIED"})
    )
    with pytest.raises(chat.AskError, match="CAN_QUERY"):
        chat.ask("http://bastion", "t", "demo", "Open?", transport=denied)


def test_the_token_comes_only_from_the_proxys_header() -> None:
    chat = _load()
    assert chat.user_token({"X-Forwarded-Access-Token": "abc"}) == "abc"
    assert chat.user_token({"x-forwarded-access-token": "abc"}) == "abc"
    assert chat.user_token({"Authorization": "Bearer other"}) is None
