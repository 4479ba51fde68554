"""The agent's tool and routing, tested without a server: `python -m pytest tests`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

AGENT = Path(__file__).resolve().parents[1] / "agent" / "agent.py"


def _load():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("project_agent", AGENT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["project_agent"] = module
    spec.loader.exec_module(module)
    return module


def test_the_tool_knows_every_day() -> None:
    agent = _load()
    assert agent.opening_hours("friday") == "On Friday we are open 9:00-20:00."
    assert agent.opening_hours("Sunday") == "On Sunday we are closed."
    assert "only know" in agent.opening_hours("Holiday")


def test_the_agent_answers_with_the_tool() -> None:
    agent = _load()
    from mlflow.types.responses import ResponsesAgentRequest

    request = ResponsesAgentRequest(input=[{"role": "user", "content": "Open on Saturday?"}])
    reply = agent.Agent().predict(request)
    assert "10:00-16:00" in reply.output[0].content[0]["text"]
    off_topic = agent.Agent().predict(
        ResponsesAgentRequest(input=[{"role": "user", "content": "Tell me a secret."}])
    )
    assert "day of the week" in off_topic.output[0].content[0]["text"]
