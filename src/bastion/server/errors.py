"""Every error reaches a client in one JSON shape: ``{"error_code": ..., "message": ...}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from bastion.errors import BastionError

logger = logging.getLogger(__name__)

_HTTP_CODES = {
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "ENDPOINT_NOT_FOUND",
    405: "BAD_REQUEST",
    413: "REQUEST_LIMIT_EXCEEDED",
    415: "BAD_REQUEST",
}


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error_code": code, "message": message}, status_code=status)


def _describe(exc: RequestValidationError) -> tuple[str, str]:
    problems = []
    for error in exc.errors()[:5]:
        kind = error.get("type", "")
        if kind == "json_invalid":
            return "MALFORMED_REQUEST", "The request body is not valid JSON."
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        if kind == "extra_forbidden":
            problems.append(f"unknown field '{location}'")
        elif kind == "missing":
            problems.append(f"missing required field '{location}'")
        else:
            problems.append(f"'{location}': {error.get('msg', 'invalid value')}")
    return "INVALID_PARAMETER_VALUE", "Invalid request: " + "; ".join(problems) + "."


def install(app: FastAPI) -> None:
    @app.exception_handler(BastionError)
    async def _bastion(request: Request, exc: BastionError) -> JSONResponse:
        request.state.error_message = exc.message
        response = error_response(exc.status_code, exc.error_code, exc.message)
        if exc.status_code == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        code, message = _describe(exc)
        request.state.error_message = message
        return error_response(400, code, message)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "BAD_REQUEST")
        message = str(exc.detail) if exc.status_code != 404 else f"No API at {request.url.path}."
        return error_response(exc.status_code, code, message)

    @app.exception_handler(RecursionError)
    async def _nested(request: Request, exc: RecursionError) -> JSONResponse:
        message = "The request is nested too deeply; flatten it."
        request.state.error_message = message
        return error_response(400, "INVALID_PARAMETER_VALUE", message)

    @app.exception_handler(OverflowError)
    async def _overflow(request: Request, exc: OverflowError) -> JSONResponse:
        message = "A number in the request is out of range."
        request.state.error_message = message
        return error_response(400, "INVALID_PARAMETER_VALUE", message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", "")
        logger.error("unhandled error in request %s", request_id, exc_info=exc)
        return error_response(
            500,
            "INTERNAL_ERROR",
            f"Internal error; the server log has details (request {request_id}).",
        )
