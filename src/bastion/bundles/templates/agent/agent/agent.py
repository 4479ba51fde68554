"""The __PROJECT__ agent: an MLflow ResponsesAgent that answers with a tool.

Served by Bastion as an MLflow pyfunc model (``bastion bundle deploy``). Keep the tool pure
and tested (``tests/test_agent.py``); the agent only routes the question to it.
"""

from __future__ import annotations

import re

import mlflow
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import ResponsesAgentRequest, ResponsesAgentResponse

OPENING_HOURS = {
    "monday": "9:00-17:00",
    "tuesday": "9:00-17:00",
    "wednesday": "9:00-17:00",
    "thursday": "9:00-17:00",
    "friday": "9:00-20:00",
    "saturday": "10:00-16:00",
    "sunday": "closed",
}


def opening_hours(day: str) -> str:
    """The tool: opening hours for a day of the week (an unknown day says so)."""
    hours = OPENING_HOURS.get(day.strip().lower())
    if hours is None:
        return f"I only know the opening hours for the days of the week, not {day!r}."
    return (
        f"On {day.strip().capitalize()} we are open {hours}."
        if hours != "closed"
        else (f"On {day.strip().capitalize()} we are closed.")
    )


def last_user_text(request: ResponsesAgentRequest) -> str:
    for item in reversed(request.input):
        data = item.model_dump() if hasattr(item, "model_dump") else dict(item)
        if data.get("role") == "user":
            content = data.get("content")
            if isinstance(content, str):
                return content
            return " ".join(
                part.get("text", "") for part in content or [] if isinstance(part, dict)
            )
    return ""


class Agent(ResponsesAgent):
    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        question = last_user_text(request)
        day = re.search(r"(mon|tues|wednes|thurs|fri|satur|sun)day", question, re.IGNORECASE)
        with mlflow.start_span("opening_hours") as span:
            answer = (
                opening_hours(day.group(0))
                if day
                else "I can tell you our opening hours: ask about a day of the week."
            )
            span.set_attribute("day", day.group(0) if day else "")
        return ResponsesAgentResponse(
            output=[self.create_text_output_item(text=answer, id="msg-1")]
        )


mlflow.models.set_model(Agent())
