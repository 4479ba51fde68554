"""The app's Bastion calls, tested without a server: `python -m pytest tests`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import httpx

CALLS = Path(__file__).resolve().parents[1] / "app" / "bastion_calls.py"


def _load():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("project_calls", CALLS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["project_calls"] = module
    spec.loader.exec_module(module)
    return module


def test_endpoints_are_listed_with_the_users_token() -> None:
    calls = _load()
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = {"endpoints": [{"name": "chat", "state": {"ready": "READY"}}]}
        return httpx.Response(200, json=body)

    listed = calls.my_endpoints(
        "http://bastion", "user-token", transport=httpx.MockTransport(answer)
    )
    assert listed == [{"name": "chat", "ready": "READY"}]
    assert seen[0].headers["authorization"] == "Bearer user-token"


def test_the_token_comes_only_from_the_proxys_header() -> None:
    calls = _load()
    assert calls.user_token({"X-Forwarded-Access-Token": "abc"}) == "abc"
    assert calls.user_token({"Authorization": "Bearer other"}) is None
