"""The native Databricks ``POST /serving-endpoints/{name}/invocations`` body.

A chat body (``messages``) is answered as a chat completion; a Responses-agent body
(``input``) as a Responses object, as Databricks' ``ResponsesAgent`` endpoints do. The
governance fields ``client_request_id`` and ``usage_context`` are taken off the body (they are
logged, never forwarded), and errors use Databricks' ``{"error_code", "message"}`` shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bastion.serving.protocols import openai_chat, openai_responses
from bastion.serving.protocols.chat import ChatRequest, ClientApi
from bastion.serving.protocols.errors import RequestValidationError
from bastion.serving.protocols.validation import invalid_type, load_body, reject_unknown

#: Databricks-only fields: ``extra_params`` is merged into the upstream parameters; agent
#: fields (``custom_inputs``, ``context``, ``databricks_options``) are accepted and dropped,
#: because the upstream speaks plain chat completions.
DATABRICKS_PARAMS = frozenset({"extra_params", "custom_inputs", "context", "databricks_options"})
_CHAT_KNOWN = openai_chat.KNOWN_PARAMS | DATABRICKS_PARAMS
_RESPONSES_KNOWN = openai_responses.KNOWN_PARAMS | DATABRICKS_PARAMS
_PROTECTED = openai_chat.KNOWN_PARAMS - openai_chat.FORWARDED_PARAMS
_NOT_CHAT = ("dataframe_records", "dataframe_split", "instances", "inputs", "prompt")


def parse_invocations(
    body: bytes | str | Mapping[str, Any], *, endpoint: str, max_tokens_cap: int | None = None
) -> ChatRequest:
    """Validate an ``/invocations`` body sent to ``endpoint`` (the name in the path).

    >>> req = parse_invocations(
    ...     b'{"messages": [{"role": "user", "content": "hi"}], "client_request_id": "r-1",'
    ...     b' "usage_context": {"team": "ml"}}', endpoint="chat")
    >>> req.client_request_id, req.usage_context, "client_request_id" in req.to_openai()
    ('r-1', {'team': 'ml'}, False)
    """
    data = load_body(body)
    if "messages" in data:
        reject_unknown(data, _CHAT_KNOWN)
        request = openai_chat.chat_request_from_dict(
            data, ClientApi.INVOCATIONS, max_tokens_cap=max_tokens_cap, model=endpoint
        )
    elif "input" in data:
        reject_unknown(data, _RESPONSES_KNOWN)
        request = openai_responses.responses_request_from_dict(
            data, ClientApi.INVOCATIONS, max_tokens_cap=max_tokens_cap, model=endpoint
        )
    else:
        found = next((key for key in _NOT_CHAT if key in data), None)
        if found is not None:
            raise RequestValidationError(
                f"'{found}' is a tabular or completions input; this endpoint serves a chat "
                "model, so send 'messages' (chat) or 'input' (Responses agent).",
                param=found,
            )
        raise RequestValidationError(
            "The body must have 'messages' (chat) or 'input' (Responses agent).",
            param="messages",
        )
    extra = data.get("extra_params")
    if extra is not None:
        if not isinstance(extra, dict):
            raise invalid_type("extra_params", "an object", extra)
        for key, value in extra.items():
            # Extra parameters may add sampling options, never replace what was validated.
            if key not in _PROTECTED:
                request.params.setdefault(key, value)
    return request
