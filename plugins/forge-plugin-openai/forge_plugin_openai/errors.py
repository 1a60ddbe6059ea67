"""The exception handlers that turn every error the app can produce into an OpenAI error
object (:mod:`forge_plugin_protocol.errors`, shared with the WebSocket API)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from forge_plugin_protocol.errors import APIError, error_body, validation_param
from starlette.exceptions import HTTPException as StarletteHTTPException

from forge_kernel.engine.types import InvalidRequest

log = logging.getLogger("forge.openai")

def error_response(status: int, message: str, param: str | None = None,
                   code: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, status, param, code), status_code=status)


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
