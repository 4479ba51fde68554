"""OpenAI Responses: ``input`` items to chat messages, completions to ``response`` objects.

The gateway stores nothing, so everything that needs server-side state
(``previous_response_id``, ``conversation``, ``background``, item references) is refused
with a message that says to send the whole conversation in ``input`` instead.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from bastion.errors import BastionError
from bastion.serving.protocols.chat import ChatRequest, ClientApi, Json, Usage, message_text, new_id
from bastion.serving.protocols.errors import RequestValidationError
from bastion.serving.protocols.openai_chat import (
    GOVERNANCE_PARAMS,
    read_governance_fields,
    validate_messages,
)
from bastion.serving.protocols.sse import encode_event
from bastion.serving.protocols.streaming import StreamTranslator
from bastion.serving.protocols.validation import (
    check_max_tokens,
    check_metadata,
    invalid_type,
    load_body,
    missing,
    optional_bool,
    optional_number,
    optional_str,
    reject_unknown,
    require_str,
)

IGNORED_PARAMS = frozenset(
    {"user", "store", "service_tier", "prompt_cache_key", "safety_identifier", "reasoning"}
    | {"truncation", "include", "max_tool_calls", "top_logprobs", "stream_options"}
    | {"prompt_cache_retention", "client_metadata", "context_management"}
)

#: Hosted tools: run by OpenAI's servers, so no upstream here can run them. Those the model
#: merely *may* use are dropped (the request means the same without them; the payload row
#: notes it); those whose absence would change what the client asked for are refused.
DROPPED_TOOLS = frozenset(
    {"web_search", "web_search_preview", "web_search_2025_08_26"}
    | {"web_search_preview_2025_03_11", "file_search", "code_interpreter"}
    | {"image_generation", "computer_use_preview", "computer_use", "namespace", "tool_search"}
)
REFUSED_TOOLS = {
    "mcp": "remote MCP servers are not connected to by this gateway; run the MCP client "
    "yourself and send its tools as 'function' tools",
    "local_shell": "'local_shell' calls have no chat-completions form; define the shell as a "
    "'function' tool",
    "custom": "free-form 'custom' tools have no chat-completions form; define a 'function' "
    "tool with a string parameter instead",
    "apply_patch": "'apply_patch' calls have no chat-completions form; define it as a "
    "'function' tool",
    "shell": "'shell' calls have no chat-completions form; define the shell as a 'function' tool",
}
_STATEFUL = {
    "previous_response_id": "'previous_response_id' is not supported: this gateway does not "
    "store responses. Send the whole conversation in 'input'.",
    "conversation": "'conversation' is not supported: this gateway does not store "
    "conversations. Send the whole conversation in 'input'.",
    "prompt": "Stored prompts ('prompt') are not supported; send 'instructions' and 'input'.",
}
_HANDLED = frozenset(
    {"model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "stream"}
    | {"tools", "tool_choice", "parallel_tool_calls", "text", "metadata", "background"}
)
KNOWN_PARAMS = IGNORED_PARAMS | GOVERNANCE_PARAMS | _HANDLED | frozenset(_STATEFUL)

_MESSAGE_ROLES = frozenset({"user", "assistant", "system", "developer"})
_INPUT_PARTS = {"input_text": "text", "output_text": "text", "refusal": "refusal"}


def parse_responses(
    body: bytes | str | Mapping[str, Any], *, max_tokens_cap: int | None = None
) -> ChatRequest:
    """Validate a ``POST /serving-endpoints/responses`` body.

    >>> req = parse_responses(b'{"model": "chat", "input": "hi", "instructions": "Be brief."}')
    >>> req.messages
    [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'hi'}]
    """
    data = load_body(body)
    reject_unknown(data, KNOWN_PARAMS)
    return responses_request_from_dict(data, ClientApi.RESPONSES, max_tokens_cap=max_tokens_cap)


def responses_request_from_dict(
    data: Json, api: ClientApi, *, max_tokens_cap: int | None, model: str | None = None
) -> ChatRequest:
    """Validate an already-decoded Responses body (shared with ``/invocations``)."""
    for key, message in _STATEFUL.items():
        if data.get(key) is not None:
            raise RequestValidationError(message, param=key, code="unsupported_parameter")
    if data.get("background"):
        raise RequestValidationError(
            "Background responses are not supported; leave 'background' unset.",
            param="background",
            code="unsupported_parameter",
        )
    if model is None:
        model = require_str(data, "model")
    instructions = optional_str(data, "instructions")
    if "input" not in data:
        raise missing("input")
    messages = input_to_messages(data["input"])
    if instructions:
        messages.insert(0, {"role": "system", "content": instructions})
    messages = validate_messages(messages, "input")

    raw_tools = data.get("tools")
    tools, dropped = _tools_to_chat(raw_tools)
    raw_choice = data.get("tool_choice")
    max_tokens = data.get("max_output_tokens")
    request = ChatRequest(
        api=api,
        reply_format=ClientApi.RESPONSES,
        model=model,
        messages=messages,
        max_tokens=None
        if max_tokens is None
        else check_max_tokens(max_tokens, "max_output_tokens", max_tokens_cap),
        temperature=optional_number(data, "temperature", 0.0, 2.0),
        top_p=optional_number(data, "top_p", 0.0, 1.0),
        stream=optional_bool(data, "stream") or False,
        tools=tools,
        tool_choice=_tool_choice_to_chat(raw_choice, tools),
        parallel_tool_calls=optional_bool(data, "parallel_tool_calls"),
        notes=[f"HOSTED_TOOL_DROPPED:{kind}" for kind in dropped],
    )
    text = data.get("text")
    if text is not None:
        response_format = _text_to_response_format(text)
        if response_format is not None:
            request.params["response_format"] = response_format
    read_governance_fields(data, request)
    request.echo = {
        "instructions": instructions,
        "metadata": check_metadata(data.get("metadata"), "metadata") or {},
        "tools": raw_tools or [],
        "tool_choice": raw_choice if raw_choice is not None else "auto",
        "text": text if text is not None else {"format": {"type": "text"}},
        "parallel_tool_calls": request.parallel_tool_calls is not False,
        "user": data.get("user"),
    }
    return request


def input_to_messages(items: Any) -> list[Json]:
    """Responses ``input`` (a string or a list of items) as OpenAI chat messages."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list):
        raise invalid_type("input", "a string or an array of input items", items)
    messages: list[Json] = []
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise invalid_type(where, "an object", item)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in _MESSAGE_ROLES:
                raise RequestValidationError(
                    f"Invalid value for '{where}.role': {role!r}. Supported values are: "
                    "'user', 'assistant', 'system' and 'developer'.",
                    param=f"{where}.role",
                    code="invalid_value",
                )
            messages.append({"role": role, "content": _content_to_chat(item.get("content"), where)})
        elif kind == "function_call":
            call = {
                "id": _item_str(item, "call_id", where),
                "type": "function",
                "function": {
                    "name": _item_str(item, "name", where),
                    "arguments": _item_str(item, "arguments", where),
                },
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            if output is None:
                raise missing(f"{where}.output")
            if not isinstance(output, str):
                output = message_text(_content_to_chat(output, f"{where}.output"))
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": _item_str(item, "call_id", where),
                    "content": output,
                }
            )
        elif kind == "reasoning":
            continue  # Reasoning items from an earlier turn cannot be sent to a chat upstream.
        elif kind == "item_reference":
            raise RequestValidationError(
                f"'{where}' is an item reference; this gateway stores no items, so send the "
                "item itself.",
                param=where,
                code="unsupported_value",
            )
        else:
            raise RequestValidationError(
                f"Invalid value for '{where}.type': {kind!r}. Supported input items are "
                "'message', 'function_call', 'function_call_output' and 'reasoning'.",
                param=f"{where}.type",
                code="invalid_value",
            )
    return messages


def _item_str(item: Json, key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        if value is None:
            raise missing(f"{where}.{key}")
        raise invalid_type(f"{where}.{key}", "a string", value)
    return value


def _content_to_chat(content: Any, where: str) -> str | list[Json]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        if content is None:
            raise missing(f"{where}.content")
        raise invalid_type(f"{where}.content", "a string or an array of content parts", content)
    parts: list[Json] = []
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise invalid_type(f"{where}.content[{j}]", "an object", part)
        kind = part.get("type")
        if kind in _INPUT_PARTS:
            text = part.get("text") if kind != "refusal" else part.get("refusal")
            if not isinstance(text, str):
                raise missing(f"{where}.content[{j}].text")
            parts.append({"type": "text", "text": text})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str):
                raise RequestValidationError(
                    f"'{where}.content[{j}]' must give 'image_url' (a URL or a data: URL); "
                    "uploaded files are not supported.",
                    param=f"{where}.content[{j}].image_url",
                    code="unsupported_value",
                )
            image: Json = {"url": url}
            if part.get("detail"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise RequestValidationError(
                f"Invalid value for '{where}.content[{j}].type': {kind!r}. Supported content "
                "types are 'input_text', 'output_text', 'refusal' and 'input_image'.",
                param=f"{where}.content[{j}].type",
                code="invalid_value",
            )
    if parts and all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _tools_to_chat(tools: Any) -> tuple[list[Json] | None, list[str]]:
    """The ``function`` tools as chat tools, and the hosted tool types that were dropped."""
    if tools is None:
        return None, []
    if not isinstance(tools, list):
        raise invalid_type("tools", "an array", tools)
    out: list[Json] = []
    dropped: list[str] = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise invalid_type(where, "an object", tool)
        kind = tool.get("type")
        if kind in DROPPED_TOOLS:
            if kind not in dropped:
                dropped.append(str(kind))
            continue
        if kind != "function":
            reason = REFUSED_TOOLS.get(str(kind), "only 'function' tools are supported")
            raise RequestValidationError(
                f"Invalid value for '{where}.type': {kind!r}; {reason}.",
                param=f"{where}.type",
                code="invalid_value",
            )
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise missing(f"{where}.name")
        function: Json = {"name": name}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        if "parameters" in function and not isinstance(function["parameters"], dict):
            raise invalid_type(
                f"{where}.parameters", "a JSON Schema object", function["parameters"]
            )
        out.append({"type": "function", "function": function})
    return out or None, dropped


def _tool_choice_to_chat(choice: Any, tools: list[Json] | None) -> str | Json | None:
    if choice is None or choice in ("none", "auto", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") in DROPPED_TOOLS | REFUSED_TOOLS.keys():
        raise RequestValidationError(
            f"Invalid 'tool_choice': {choice.get('type')!r} is a tool hosted by OpenAI, which "
            "this gateway cannot run; it cannot be forced.",
            param="tool_choice.type",
            code="invalid_value",
        )
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name")
        if not any(tool["function"]["name"] == name for tool in tools or ()):
            raise RequestValidationError(
                f"Invalid 'tool_choice': no function tool named {name!r} is in 'tools'.",
                param="tool_choice.name",
                code="invalid_value",
            )
        return {"type": "function", "function": {"name": name}}
    raise RequestValidationError(
        "Invalid 'tool_choice': expected 'none', 'auto', 'required' or "
        "{'type': 'function', 'name': ...}.",
        param="tool_choice",
        code="invalid_value",
    )


def _text_to_response_format(text: Any) -> Json | None:
    if not isinstance(text, dict):
        raise invalid_type("text", "an object", text)
    fmt = text.get("format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    raise RequestValidationError(
        "Invalid 'text.format.type'; expected 'text', 'json_object' or 'json_schema'.",
        param="text.format.type",
        code="invalid_value",
    )


# ---------------------------------------------------------------- rendering


def responses_usage(usage: Usage) -> Json:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def response_object(
    request: ChatRequest,
    response_id: str,
    created_at: float,
    *,
    status: str,
    output: list[Json],
    usage: Usage | None,
    finish_reason: str | None = None,
) -> Json:
    """A Responses ``response`` object; ``finish_reason`` decides ``incomplete_details``."""
    echo = request.echo
    incomplete = None
    if finish_reason == "length":
        status, incomplete = "incomplete", {"reason": "max_output_tokens"}
    elif finish_reason == "content_filter":
        status, incomplete = "incomplete", {"reason": "content_filter"}
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": echo.get("instructions"),
        "max_output_tokens": request.max_tokens,
        "model": request.model,
        "output": output,
        "parallel_tool_calls": echo.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": request.temperature,
        "text": echo.get("text", {"format": {"type": "text"}}),
        "tool_choice": echo.get("tool_choice", "auto"),
        "tools": echo.get("tools", []),
        "top_p": request.top_p,
        "truncation": "disabled",
        "usage": None if usage is None else responses_usage(usage),
        "user": echo.get("user"),
        "metadata": echo.get("metadata", {}),
    }


def _message_item(item_id: str, text: str, status: str = "completed") -> Json:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [_text_part(text)],
    }


def _text_part(text: str) -> Json:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _function_call_item(item_id: str, call: Json, status: str = "completed") -> Json:
    function = call.get("function") or {}
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call.get("id") or item_id,
        "name": function.get("name") or "",
        "arguments": function.get("arguments") or "",
        "status": status,
    }


def render_response(upstream: Json, request: ChatRequest) -> Json:
    """An upstream ``chat.completion`` as a Responses ``response`` object."""
    choices = upstream.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    calls = message.get("tool_calls") or []
    output: list[Json] = []
    text = message_text(message.get("content"))
    refusal = message.get("refusal")
    if refusal:
        output.append(
            {
                "id": new_id("msg_"),
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "refusal", "refusal": refusal}],
            }
        )
    elif text or not calls:
        output.append(_message_item(new_id("msg_"), text))
    output.extend(_function_call_item(new_id("fc_"), call) for call in calls)
    return response_object(
        request,
        new_id("resp_"),
        upstream.get("created") or int(time.time()),
        status="completed",
        output=output,
        usage=Usage.from_openai(upstream.get("usage")),
        finish_reason=choice.get("finish_reason"),
    )


class ResponsesStream(StreamTranslator):
    """Upstream chunks as the Responses event stream, every event with its ``sequence_number``.

    ``response.created`` and ``response.in_progress`` open the stream; text is one message
    item with one ``output_text`` part; each tool call is a ``function_call`` item; the final
    ``response.completed`` (or ``response.incomplete`` when the token limit cut it short)
    carries the whole output and the usage.
    """

    def __init__(self, request: ChatRequest) -> None:
        super().__init__(request)
        self.response_id = new_id("resp_")
        self.created_at = int(time.time())
        self._sequence = 0
        self._started = False
        self._output: list[Json | None] = []
        self._text_item: Json | None = None
        self._text_index = -1
        self._text: list[str] = []
        #: Upstream tool-call index -> (output index, item).
        self._calls: dict[int, tuple[int, Json]] = {}
        self._arguments: dict[int, list[str]] = {}

    def _event(self, kind: str, payload: Json) -> bytes:
        payload["type"] = kind
        payload["sequence_number"] = self._sequence
        self._sequence += 1
        return encode_event(kind, payload)

    def _snapshot(self, status: str, usage: Usage | None = None) -> Json:
        output = [item for item in self._output if item is not None]
        return response_object(
            self.request,
            self.response_id,
            self.created_at,
            status=status,
            output=output,
            usage=usage,
            finish_reason=self.accumulator.finish_reason if status != "in_progress" else None,
        )

    def start(self) -> bytes:
        """``response.created`` and ``response.in_progress``; sent once, before any output."""
        if self._started:
            return b""
        self._started = True
        snapshot = self._snapshot("in_progress")
        return self._event("response.created", {"response": snapshot}) + self._event(
            "response.in_progress", {"response": snapshot}
        )

    def feed(self, chunk: Json) -> bytes:
        self.accumulator.add(chunk)
        out = [self.start()] if not self._started else []
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content") or delta.get("refusal")
            if text:
                out.append(self._text_delta(text))
            for call in delta.get("tool_calls") or ():
                out.append(self._tool_delta(call))
        return b"".join(out)

    def _text_delta(self, text: str) -> bytes:
        out = b""
        if self._text_item is None:
            item_id = new_id("msg_")
            self._text_item = _message_item(item_id, "", status="in_progress")
            self._text_item["content"] = []
            self._text_index = len(self._output)
            self._output.append(None)
            out += self._event(
                "response.output_item.added",
                {"output_index": self._text_index, "item": self._text_item},
            )
            out += self._event(
                "response.content_part.added",
                {
                    "item_id": item_id,
                    "output_index": self._text_index,
                    "content_index": 0,
                    "part": _text_part(""),
                },
            )
        self._text.append(text)
        return out + self._event(
            "response.output_text.delta",
            {
                "item_id": self._text_item["id"],
                "output_index": self._text_index,
                "content_index": 0,
                "delta": text,
                "logprobs": [],
            },
        )

    def _close_text(self) -> bytes:
        item = self._text_item
        if item is None:
            return b""
        self._text_item = None
        text = "".join(self._text)
        self._text = []
        common = {"item_id": item["id"], "output_index": self._text_index, "content_index": 0}
        done = _message_item(item["id"], text)
        self._output[self._text_index] = done
        return (
            self._event("response.output_text.done", {**common, "text": text, "logprobs": []})
            + self._event("response.content_part.done", {**common, "part": _text_part(text)})
            + self._event(
                "response.output_item.done", {"output_index": self._text_index, "item": done}
            )
        )

    def _tool_delta(self, call: Json) -> bytes:
        index = call.get("index", 0)
        function = call.get("function") or {}
        out = b""
        known = self._calls.get(index)
        if known is None:
            out += self._close_text()
            output_index = len(self._output)
            item = _function_call_item(
                new_id("fc_"),
                {"id": call.get("id"), "function": {"name": function.get("name")}},
                status="in_progress",
            )
            self._output.append(None)
            known = self._calls[index] = (output_index, item)
            self._arguments[index] = []
            out += self._event(
                "response.output_item.added", {"output_index": output_index, "item": item}
            )
        arguments = function.get("arguments")
        if arguments:
            output_index, item = known
            self._arguments[index].append(arguments)
            out += self._event(
                "response.function_call_arguments.delta",
                {"item_id": item["id"], "output_index": output_index, "delta": arguments},
            )
        return out

    def finish(self) -> bytes:
        if self.finished:
            return b""
        self.finished = True
        out = [self.start(), self._close_text()]
        for index in sorted(self._calls):
            output_index, item = self._calls[index]
            arguments = "".join(self._arguments[index])
            done = {**item, "arguments": arguments, "status": "completed"}
            self._output[output_index] = done
            out.append(
                self._event(
                    "response.function_call_arguments.done",
                    {
                        "item_id": item["id"],
                        "output_index": output_index,
                        "name": item["name"],
                        "arguments": arguments,
                    },
                )
            )
            out.append(
                self._event(
                    "response.output_item.done", {"output_index": output_index, "item": done}
                )
            )
        snapshot = self._snapshot("completed", self.accumulator.usage)
        kind = "response.completed" if snapshot["status"] == "completed" else "response.incomplete"
        out.append(self._event(kind, {"response": snapshot}))
        return b"".join(out)

    def error(self, error: BastionError) -> bytes:
        self.finished = True
        return self._event(
            "error",
            {
                "code": getattr(error, "code", None) or error.error_code,
                "message": error.message,
                "param": getattr(error, "param", None),
            },
        )
