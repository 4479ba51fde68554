"""Typed errors, each with the HTTP status and Databricks-style error code it maps to.

The server maps every :class:`BastionError` to one JSON shape in one place
(``{"error_code": ..., "message": ...}``); the CLI maps it to one line on stderr and exit 1.
"""

from __future__ import annotations


class BastionError(Exception):
    """Base class of every error Bastion reports to a user."""

    status_code: int = 500
    error_code: str = "INTERNAL_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"error_code": self.error_code, "message": self.message}


class InvalidRequest(BastionError):
    status_code = 400
    error_code = "INVALID_PARAMETER_VALUE"


class MalformedRequest(InvalidRequest):
    error_code = "MALFORMED_REQUEST"


class Unauthenticated(BastionError):
    status_code = 401
    error_code = "UNAUTHENTICATED"


class PermissionDenied(BastionError):
    status_code = 403
    error_code = "PERMISSION_DENIED"


class NotFound(BastionError):
    status_code = 404
    error_code = "RESOURCE_DOES_NOT_EXIST"


class AlreadyExists(BastionError):
    status_code = 409
    error_code = "RESOURCE_ALREADY_EXISTS"


class Conflict(BastionError):
    status_code = 409
    error_code = "RESOURCE_CONFLICT"


class PayloadTooLarge(BastionError):
    status_code = 413
    error_code = "REQUEST_LIMIT_EXCEEDED"


class RateLimited(BastionError):
    status_code = 429
    error_code = "REQUEST_LIMIT_EXCEEDED"


class GuardrailViolation(BastionError):
    """A request or answer that a serving endpoint's guardrails blocked.

    ``code`` is what OpenAI-shaped errors carry (Azure OpenAI's value for filtered content).
    """

    status_code = 400
    error_code = "BAD_REQUEST"
    code = "content_filter"


class UpstreamError(BastionError):
    """A model server failed. ``detail`` (its own words, e.g. the body of its error answer)
    is for those who manage the endpoint, never part of ``message``."""

    status_code = 502
    error_code = "UPSTREAM_ERROR"
    detail: str | None = None


class Unavailable(BastionError):
    status_code = 503
    error_code = "TEMPORARILY_UNAVAILABLE"


class DeadlineExceeded(BastionError):
    status_code = 504
    error_code = "DEADLINE_EXCEEDED"


class StatementCanceled(BastionError):
    """The caller cancelled the statement while it ran."""

    status_code = 409
    error_code = "CANCELLED"


class ResourceExhausted(BastionError):
    """The statement needed more memory than its limit allows."""

    status_code = 429
    error_code = "RESOURCE_EXHAUSTED"


class ContextLengthExceeded(InvalidRequest):
    """A prompt longer than the context window of the model that would answer it.

    ``code`` is what OpenAI-shaped errors carry (OpenAI's own value for this case).
    """

    error_code = "BAD_REQUEST"
    code = "context_length_exceeded"
