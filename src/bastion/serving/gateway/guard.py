"""Where guardrails meet requests and replies: which texts are checked, and how masked texts
go back in.

Input: the text of every message (a string ``content`` or its ``text`` parts), system prompt
included. Output: each choice's ``message.content``. Tool-call arguments and images are not
inspected. A streamed request on an endpoint with output guardrails is answered from one whole
upstream reply, checked, then replayed as the client's stream
(:func:`bastion.serving.protocols.completion_chunks`), so
that nothing unchecked reaches the client.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace

from bastion.serving.protocols import ChatRequest, Json

#: Where a text came from: (message index, part index or None for a string content).
TextRef = tuple[int, int | None]


def request_texts(chat: ChatRequest) -> tuple[list[TextRef], list[str]]:
    refs: list[TextRef] = []
    texts: list[str] = []
    for index, message in enumerate(chat.messages):
        content = message.get("content")
        if isinstance(content, str):
            refs.append((index, None))
            texts.append(content)
        elif isinstance(content, list):
            for part_index, part in enumerate(content):
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    refs.append((index, part_index))
                    texts.append(part["text"])
    return refs, texts


def with_request_texts(
    chat: ChatRequest, refs: Sequence[TextRef], texts: Sequence[str]
) -> ChatRequest:
    """``chat`` with the texts at ``refs`` replaced (the original is left as it was)."""
    messages = list(chat.messages)
    copied: set[int] = set()
    for (index, part_index), text in zip(refs, texts, strict=True):
        if index not in copied:
            messages[index] = copy.deepcopy(messages[index])
            copied.add(index)
        if part_index is None:
            messages[index]["content"] = text
        else:
            messages[index]["content"][part_index]["text"] = text
    return replace(chat, messages=messages)


def reply_texts(reply: Json) -> tuple[list[int], list[str]]:
    indexes: list[int] = []
    texts: list[str] = []
    for index, choice in enumerate(reply.get("choices") or []):
        content = (choice.get("message") or {}).get("content")
        if isinstance(content, str) and content:
            indexes.append(index)
            texts.append(content)
    return indexes, texts


def with_reply_texts(reply: Json, indexes: Sequence[int], texts: Sequence[str]) -> Json:
    out = dict(reply)
    choices = [dict(choice) for choice in reply.get("choices") or []]
    for index, text in zip(indexes, texts, strict=True):
        choices[index]["message"] = {**choices[index]["message"], "content": text}
    out["choices"] = choices
    return out
