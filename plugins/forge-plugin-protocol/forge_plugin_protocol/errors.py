"""OpenAI error objects, as both the HTTP and the WebSocket API send them.

Every error is ``{"error": {"message", "type", "param", "code"}}`` with a string (or null)
``code``. Bad input is always 4xx — OpenAI clients retry 5xx, so a 500 for a bad request turns
into three bad requests.
"""

from __future__ import annotations

from typing import Any

_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404:
          "invalid_request_error", 405: "invalid_request_error", 413: "invalid_request_error",
          422: "invalid_request_error", 429: "rate_limit_error", 503: "service_unavailable"}


class APIError(Exception):
    """An error with an HTTP status and OpenAI fields, raised by request handling code."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_body(message: str, status: int, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """The OpenAI error object for ``status`` (its ``type`` follows from the status)."""
    return {"error": {"message": message, "type": _TYPES.get(status, "server_error"),
                      "param": param, "code": code}}


def model_not_found(model: str) -> APIError:
    return APIError(404, f"The model `{model}` does not exist.", "model", "model_not_found")


def validation_param(loc: tuple[Any, ...]) -> str | None:
    """The OpenAI ``param`` for a pydantic error location (``("body", "messages", 0)`` ->
    ``"messages.0"``)."""
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or None
