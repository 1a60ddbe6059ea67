"""OpenAI error objects and the exception handlers that produce them.

Every error is ``{"error": {"message", "type", "param", "code"}}`` with a string (or null)
``code``. Bad input is always 4xx — OpenAI clients retry 5xx, so a 500 for a bad request turns
into three bad requests.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from forge_kernel.engine.types import InvalidRequest

log = logging.getLogger("forge.openai")

_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404:
          "invalid_request_error", 405: "invalid_request_error", 413: "invalid_request_error",
          422: "invalid_request_error", 429: "rate_limit_error", 503: "service_unavailable"}


class APIError(Exception):
    """An error with an HTTP status and OpenAI fields, raised by route code."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_body(message: str, status: int, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": _TYPES.get(status, "server_error"),
                      "param": param, "code": code}}


def error_response(status: int, message: str, param: str | None = None,
                   code: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, status, param, code), status_code=status)


def model_not_found(model: str) -> APIError:
    return APIError(404, f"The model `{model}` does not exist.", "model", "model_not_found")


def validation_param(loc: tuple[Any, ...]) -> str | None:
    """The OpenAI ``param`` for a pydantic error location (``("body", "messages", 0)`` ->
    ``"messages.0"``)."""
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or None


def install_error_handlers(app: FastAPI) -> None:
    """Make every error the app can produce OpenAI-shaped."""

    @app.exception_handler(APIError)
    async def api_error(_request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.param, exc.code)

    @app.exception_handler(InvalidRequest)
    async def invalid(_request: Request, exc: InvalidRequest) -> JSONResponse:
        return error_response(400, exc.message, exc.param, exc.code)

    @app.exception_handler(RequestValidationError)
    async def validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            return error_response(400, "We could not parse the JSON body of your request. "
                                       f"({first.get('msg', 'invalid JSON')})", None,
                                  "invalid_json")
        param = validation_param(tuple(first.get("loc", ())))
        message = f"{param}: {first.get('msg', 'invalid value')}" if param else \
            first.get("msg", "invalid request")
        return error_response(400, message, param, "invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404:
            message = "Not found: no such route"
        return error_response(exc.status_code, message, None, None)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error while serving a request")
        return error_response(500, "The server had an error while processing your request.",
                              None, "internal_error")
