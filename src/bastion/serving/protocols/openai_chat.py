"""OpenAI Chat Completions: request validation, response passthrough, stream passthrough.

The canonical request *is* a chat-completions request, so this module is mostly validation:
messages, roles, content parts, tools and sampling ranges are checked here, once, for every
API (the Responses and Anthropic parsers produce messages in this shape too).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from bastion.errors import BastionError
from bastion.serving.protocols.chat import ChatRequest, ClientApi, Json
from bastion.serving.protocols.errors import RequestValidationError, openai_error_body
from bastion.serving.protocols.sse import DONE_EVENT, encode_data
from bastion.serving.protocols.streaming import StreamTranslator
from bastion.serving.protocols.validation import (
    check_max_tokens,
    check_stop,
    invalid_type,
    load_body,
    missing,
    optional_bool,
    optional_number,
    optional_str,
    reject_unknown,
    require_str,
)

#: Parameters forwarded upstream unchanged.
FORWARDED_PARAMS = frozenset(
    {"frequency_penalty", "presence_penalty", "seed", "response_format", "logit_bias"}
    | {"logprobs", "top_logprobs"}
)
#: Parameters OpenAI defines that have no effect here; accepted and dropped.
IGNORED_PARAMS = frozenset(
    {"user", "metadata", "store", "service_tier", "prompt_cache_key", "safety_identifier"}
    | {"reasoning_effort", "verbosity", "modalities", "prediction", "prompt_cache_retention"}
)
#: Bastion/Databricks governance fields, accepted on every API and never forwarded.
GOVERNANCE_PARAMS = frozenset({"client_request_id", "usage_context"})
_HANDLED = frozenset(
    {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p"}
    | {"stop", "stream", "stream_options", "tools", "tool_choice", "parallel_tool_calls", "n"}
    | {"functions", "function_call", "audio", "web_search_options"}
)
KNOWN_PARAMS = FORWARDED_PARAMS | IGNORED_PARAMS | GOVERNANCE_PARAMS | _HANDLED

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
_PARTS_BY_ROLE = {
    "system": frozenset({"text"}),
    "developer": frozenset({"text"}),
    "user": frozenset({"text", "image_url", "input_audio", "file"}),
    "assistant": frozenset({"text", "refusal"}),
    "tool": frozenset({"text"}),
}
_UNSUPPORTED = {
    "functions": "'functions' is deprecated and not supported; send 'tools' instead.",
    "function_call": "'function_call' is deprecated and not supported; send 'tool_choice'.",
    "audio": "Audio output is not supported by this gateway; remove 'audio'.",
    "web_search_options": "Web search is not supported by this gateway.",
}


def parse_chat_completions(
    body: bytes | str | Mapping[str, Any], *, max_tokens_cap: int | None = None
) -> ChatRequest:
    """Validate a ``POST /serving-endpoints/chat/completions`` body.

    ``model`` is the endpoint name. Unknown parameters are rejected with OpenAI's
    "Unrecognized request argument" error; parameters OpenAI defines but the gateway does not
    use (``user``, ``metadata``, ``store``, ...) are accepted and dropped.

    >>> req = parse_chat_completions(
    ...     b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}]}')
    >>> req.model, req.messages
    ('chat', [{'role': 'user', 'content': 'hi'}])
    """
    data = load_body(body)
    reject_unknown(data, KNOWN_PARAMS)
    return chat_request_from_dict(data, ClientApi.CHAT_COMPLETIONS, max_tokens_cap=max_tokens_cap)


def chat_request_from_dict(
    data: Json, api: ClientApi, *, max_tokens_cap: int | None, model: str | None = None
) -> ChatRequest:
    """Validate an already-decoded chat-completions body (shared with ``/invocations``)."""
    for key, message in _UNSUPPORTED.items():
        if data.get(key) is not None:
            raise RequestValidationError(message, param=key, code="unsupported_parameter")
    if model is None:
        model = require_str(data, "model")
    messages = data.get("messages")
    if messages is None:
        raise missing("messages")
    messages = validate_messages(messages, "messages")

    n = data.get("n")
    if n is not None and n != 1:
        raise RequestValidationError(
            "Only n=1 is supported; send separate requests for more choices.",
            param="n",
            code="unsupported_value",
        )
    max_tokens = data.get("max_completion_tokens")
    param = "max_completion_tokens"
    if max_tokens is None:
        max_tokens, param = data.get("max_tokens"), "max_tokens"
    stream = optional_bool(data, "stream") or False
    include_usage = False
    options = data.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise invalid_type("stream_options", "an object", options)
        include_usage = options.get("include_usage") is True

    tools = validate_tools(data.get("tools"))
    request = ChatRequest(
        api=api,
        reply_format=ClientApi.CHAT_COMPLETIONS,
        model=model,
        messages=messages,
        max_tokens=None
        if max_tokens is None
        else check_max_tokens(max_tokens, param, max_tokens_cap),
        temperature=optional_number(data, "temperature", 0.0, 2.0),
        top_p=optional_number(data, "top_p", 0.0, 1.0),
        stop=check_stop(data.get("stop"), "stop"),
        stream=stream,
        tools=tools,
        tool_choice=validate_tool_choice(data.get("tool_choice"), tools),
        parallel_tool_calls=optional_bool(data, "parallel_tool_calls"),
        include_usage=include_usage,
    )
    for key in FORWARDED_PARAMS:
        if key in data:
            request.params[key] = data[key]
    read_governance_fields(data, request)
    return request


def read_governance_fields(data: Json, request: ChatRequest) -> None:
    """Take ``client_request_id`` and ``usage_context`` off the body onto the request."""
    request.client_request_id = optional_str(data, "client_request_id")
    context = data.get("usage_context")
    if context is not None and not isinstance(context, dict):
        raise invalid_type("usage_context", "an object", context)
    request.usage_context = context


def validate_messages(messages: Any, param: str) -> list[Json]:
    """Check OpenAI chat messages; ``developer`` becomes ``system`` for upstream servers."""
    if not isinstance(messages, list):
        raise invalid_type(param, "an array", messages)
    if not messages:
        raise RequestValidationError(
            f"Invalid '{param}': empty array. Expected an array with at least one message.",
            param=param,
            code="empty_array",
        )
    out = messages
    for i, message in enumerate(messages):
        where = f"{param}[{i}]"
        if not isinstance(message, dict):
            raise invalid_type(where, "an object", message)
        role = message.get("role")
        if role not in _ROLES:
            if role is None:
                raise missing(f"{where}.role")
            raise RequestValidationError(
                f"Invalid value for '{where}.role': {role!r}. Supported values are: "
                "'system', 'developer', 'user', 'assistant' and 'tool'.",
                param=f"{where}.role",
                code="invalid_value",
            )
        content = message.get("content")
        if role == "assistant":
            if content is not None:
                _check_content(content, role, f"{where}.content")
            calls = message.get("tool_calls")
            if calls is not None:
                _check_tool_calls(calls, f"{where}.tool_calls")
        else:
            if content is None:
                raise missing(f"{where}.content")
            _check_content(content, role, f"{where}.content")
            if role == "tool" and not isinstance(message.get("tool_call_id"), str):
                raise missing(f"{where}.tool_call_id")
        name = message.get("name")
        if name is not None and not isinstance(name, str):
            raise invalid_type(f"{where}.name", "a string", name)
        if role == "developer":
            if out is messages:
                out = list(messages)
            out[i] = {**message, "role": "system"}
    return out


def _check_content(content: Any, role: str, param: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise invalid_type(param, "a string or an array of content parts", content)
    allowed = _PARTS_BY_ROLE[role]
    for j, part in enumerate(content):
        where = f"{param}[{j}]"
        if not isinstance(part, dict):
            raise invalid_type(where, "an object", part)
        kind = part.get("type")
        if kind not in allowed:
            raise RequestValidationError(
                f"Invalid value for '{where}.type': {kind!r} is not a content part type a "
                f"{role} message can carry; use one of: {', '.join(sorted(allowed))}.",
                param=f"{where}.type",
                code="invalid_value",
            )
        if kind == "text" and not isinstance(part.get("text"), str):
            raise missing(f"{where}.text")
        if kind == "image_url":
            image = part.get("image_url")
            if not isinstance(image, dict) or not isinstance(image.get("url"), str):
                raise missing(f"{where}.image_url.url")


def _check_tool_calls(calls: Any, param: str) -> None:
    if not isinstance(calls, list):
        raise invalid_type(param, "an array", calls)
    for k, call in enumerate(calls):
        where = f"{param}[{k}]"
        if not isinstance(call, dict):
            raise invalid_type(where, "an object", call)
        if not isinstance(call.get("id"), str):
            raise missing(f"{where}.id")
        function = call.get("function")
        if not isinstance(function, dict):
            raise missing(f"{where}.function")
        if not isinstance(function.get("name"), str):
            raise missing(f"{where}.function.name")
        if not isinstance(function.get("arguments"), str):
            raise invalid_type(f"{where}.function.arguments", "a string", function.get("arguments"))


def validate_tools(tools: Any) -> list[Json] | None:
    """Check OpenAI ``tools``: only ``function`` tools can be forwarded upstream."""
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise invalid_type("tools", "an array", tools)
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise invalid_type(where, "an object", tool)
        if tool.get("type") != "function":
            raise RequestValidationError(
                f"Invalid value for '{where}.type': {tool.get('type')!r}; only 'function' "
                "tools are supported.",
                param=f"{where}.type",
                code="invalid_value",
            )
        function = tool.get("function")
        if not isinstance(function, dict):
            raise missing(f"{where}.function")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise missing(f"{where}.function.name")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise invalid_type(f"{where}.function.parameters", "a JSON Schema object", parameters)
    return tools or None


def validate_tool_choice(choice: Any, tools: list[Json] | None) -> str | Json | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise RequestValidationError(
                f"Invalid value for 'tool_choice': {choice!r}. Supported values are: "
                "'none', 'auto' and 'required', or a named function.",
                param="tool_choice",
                code="invalid_value",
            )
        return choice
    if not isinstance(choice, dict):
        raise invalid_type("tool_choice", "a string or an object", choice)
    function = choice.get("function")
    if choice.get("type") != "function" or not isinstance(function, dict):
        raise RequestValidationError(
            "Invalid 'tool_choice': expected {'type': 'function', 'function': {'name': ...}}.",
            param="tool_choice",
            code="invalid_value",
        )
    name = function.get("name")
    if not any(tool["function"]["name"] == name for tool in tools or ()):
        raise RequestValidationError(
            f"Invalid 'tool_choice': no tool named {name!r} is in 'tools'.",
            param="tool_choice.function.name",
            code="invalid_value",
        )
    return choice


def render_chat_completion(upstream: Json, request: ChatRequest) -> Json:
    """The upstream's ``chat.completion``, named after the endpoint the client called."""
    completion = {**upstream, "model": request.model}
    completion.setdefault("object", "chat.completion")
    if "created" not in completion:
        completion["created"] = int(time.time())
    return completion


class ChatCompletionsStream(StreamTranslator):
    """Passes upstream chunks through, renamed to the endpoint.

    The upstream is always asked for usage; the usage-only chunk is withheld unless the
    client asked for it with ``stream_options.include_usage``, as OpenAI does.
    """

    def feed(self, chunk: Json) -> bytes:
        self.accumulator.add(chunk)
        if not self.request.include_usage and chunk.get("usage") is not None:
            if not chunk.get("choices"):
                return b""
            chunk = {**chunk, "usage": None}
        return encode_data({**chunk, "model": self.model})

    def finish(self) -> bytes:
        if self.finished:
            return b""
        self.finished = True
        return DONE_EVENT

    def error(self, error: BastionError) -> bytes:
        self.finished = True
        return encode_data(openai_error_body(error))
