"""Validation errors raised while parsing client bodies, and each API's error body.

Parsing raises :class:`RequestValidationError` (a :class:`~bastion.errors.InvalidRequest`,
so HTTP 400) or :class:`MalformedBody` for bytes that are not a JSON object. Both carry the
offending ``param`` so that the OpenAI error shape can name it. :func:`render_error` turns any
:class:`~bastion.errors.BastionError` into the status code and body that the calling API's
own SDK understands.
"""

from __future__ import annotations

from typing import Any

import orjson

from bastion.errors import BastionError, InvalidRequest, MalformedRequest
from bastion.serving.protocols.chat import ClientApi


class RequestValidationError(InvalidRequest):
    """A request body that is well-formed JSON but not a valid request for its API."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param = param
        self.code = code


class MalformedBody(MalformedRequest):
    """A request body that is not a JSON object at all."""

    param: str | None = None
    code: str | None = None


# OpenAI's `error.type` values by HTTP status.
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}

# Anthropic's `error.type` values by HTTP status (https://docs.anthropic.com/en/api/errors).
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def openai_error_body(error: BastionError) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}``, as OpenAI's API returns it."""
    status = error.status_code
    kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {
        "error": {
            "message": error.message,
            "type": kind,
            "param": getattr(error, "param", None),
            "code": getattr(error, "code", None) or error.error_code,
        }
    }


def anthropic_error_body(error: BastionError) -> dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}}``, as Anthropic's API returns it."""
    status = error.status_code
    kind = _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": error.message}}


def databricks_error_body(error: BastionError) -> dict[str, Any]:
    """``{"error_code", "message"}``, the native Databricks serving shape."""
    return error.to_dict()


def error_body(api: ClientApi, error: BastionError) -> dict[str, Any]:
    """The error body for ``error`` in the shape of the API the client called."""
    if api is ClientApi.ANTHROPIC_MESSAGES:
        return anthropic_error_body(error)
    if api is ClientApi.INVOCATIONS:
        return databricks_error_body(error)
    return openai_error_body(error)


def render_error(api: ClientApi, error: BastionError) -> tuple[int, bytes]:
    """``(status_code, JSON body)`` for ``error`` in the calling API's shape.

    >>> render_error(ClientApi.INVOCATIONS, InvalidRequest("max_tokens must be >= 1"))
    (400, b'{"error_code":"INVALID_PARAMETER_VALUE","message":"max_tokens must be >= 1"}')
    """
    return error.status_code, orjson.dumps(error_body(api, error))
