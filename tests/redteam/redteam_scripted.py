"""A tiny deterministic chat model for driving attacks and judges in unit tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from bastion.redteam.models import Message


class ScriptedModel:
    """Replies from a script, or by calling ``reply(messages)``; records every call."""

    def __init__(
        self, replies: Iterable[str] = (), reply: Callable[[list[Message]], str] | None = None
    ) -> None:
        self.replies = list(replies)
        self.reply = reply
        self.calls: list[list[Message]] = []

    async def complete(self, messages: list[Message], *, max_tokens: int = 256) -> str:
        self.calls.append([dict(m) for m in messages])
        if self.reply is not None:
            return self.reply(messages)
        return self.replies.pop(0)
