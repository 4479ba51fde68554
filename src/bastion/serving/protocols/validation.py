"""Cheap checks shared by the request parsers: plain ``isinstance`` tests on orjson output.

Each check raises :class:`RequestValidationError` naming the parameter, in the dotted form
OpenAI uses (``messages[2].content``), so that a client sees exactly what to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from bastion.serving.protocols.chat import Json
from bastion.serving.protocols.errors import MalformedBody, RequestValidationError

#: Largest ``max_tokens`` accepted when the caller configures no cap of its own.
DEFAULT_MAX_TOKENS_CAP = 1_000_000


def load_body(body: bytes | str | Mapping[str, Any]) -> Json:
    """The request body as a dict: raw bytes are decoded with orjson."""
    if isinstance(body, dict):
        return body
    if isinstance(body, Mapping):
        return dict(body)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedBody(
            f"The request body is not valid JSON ({exc.msg} at position {exc.pos}). "
            "Send a JSON object with Content-Type: application/json."
        ) from None
    if not isinstance(data, dict):
        raise MalformedBody(
            f"The request body must be a JSON object, not a JSON {_json_type(data)}."
        )
    return data


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    return "object"


def invalid_type(param: str, expected: str, value: Any) -> RequestValidationError:
    return RequestValidationError(
        f"Invalid type for '{param}': expected {expected}, but got {_json_type(value)}.",
        param=param,
        code="invalid_type",
    )


def missing(param: str) -> RequestValidationError:
    return RequestValidationError(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def require_str(data: Json, key: str, param: str | None = None) -> str:
    value = data.get(key)
    if value is None:
        raise missing(param or key)
    if not isinstance(value, str):
        raise invalid_type(param or key, "a string", value)
    return value


def optional_str(data: Json, key: str, param: str | None = None) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise invalid_type(param or key, "a string", value)
    return value


def optional_bool(data: Json, key: str) -> bool | None:
    value = data.get(key)
    if value is not None and not isinstance(value, bool):
        raise invalid_type(key, "a boolean", value)
    return value


def optional_number(data: Json, key: str, low: float, high: float) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid_type(key, "a number", value)
    if not low <= value <= high:
        raise RequestValidationError(
            f"Invalid '{key}': {value} is out of range; it must be between {low:g} and {high:g}.",
            param=key,
            code="invalid_value",
        )
    return value


def check_max_tokens(value: Any, param: str, cap: int | None) -> int:
    """A token limit: an integer between 1 and ``cap`` (the endpoint's configured ceiling)."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise invalid_type(param, "an integer", value)
    limit = DEFAULT_MAX_TOKENS_CAP if cap is None else cap
    if value < 1:
        raise RequestValidationError(
            f"Invalid '{param}': {value}; it must be at least 1.", param=param, code="invalid_value"
        )
    if value > limit:
        raise RequestValidationError(
            f"Invalid '{param}': {value} is more than this endpoint allows ({limit}); "
            f"ask for at most {limit} tokens.",
            param=param,
            code="invalid_value",
        )
    return value


def check_stop(value: Any, param: str, limit: int | None = 4) -> list[str] | None:
    """Stop sequences: a string or a list of non-empty strings, as a list."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value] if value else None
    if not isinstance(value, list):
        raise invalid_type(param, "a string or an array of strings", value)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise invalid_type(f"{param}[{i}]", "a string", item)
    if limit is not None and len(value) > limit:
        raise RequestValidationError(
            f"Invalid '{param}': at most {limit} stop sequences are allowed, got {len(value)}.",
            param=param,
            code="invalid_value",
        )
    return value or None


def check_function_schema(schema: Any, param: str) -> None:
    if schema is not None and not isinstance(schema, dict):
        raise invalid_type(param, "a JSON Schema object", schema)


def check_metadata(value: Any, param: str) -> Json | None:
    if value is not None and not isinstance(value, dict):
        raise invalid_type(param, "an object", value)
    return value


def reject_unknown(
    data: Json,
    known: frozenset[str],
    template: str = "Unrecognized request argument supplied: {key}",
) -> None:
    """Reject top-level fields that the API does not define (OpenAI's wording by default)."""
    for key in data:
        if key not in known:
            raise RequestValidationError(
                template.format(key=key),
                param=key,
                code="unrecognized_argument",
            )
