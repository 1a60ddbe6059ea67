"""``/v1/rag/...`` routes (collections, document upload/list/delete, query) and the mounting of
``/v1/embeddings``. Mounted on the server's FastAPI app, so the auth and metrics middlewares
cover them like every other route.

Indexing and search run in worker threads (``asyncio.to_thread``): embedding is CPU work that
must not stall the event loop the token streams of other requests run on.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from forge_kernel.errors import ModelNotFound
from forge_kernel.interfaces.endpoint import Endpoint
from forge_plugin_rag.errors import DocumentTooLarge, RAGError

ERROR_TYPES = {401: "invalid_request_error", 429: "rate_limit_error"}


def error_json(status: int, message: str, param: str | None, code: str | None) -> dict:
    kind = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


async def json_body(request: Any) -> dict[str, Any]:
    """The request's JSON object, or a 400 :class:`RAGError` saying what is wrong with it."""
    raw = await request.body()
    try:
        body = json.loads(raw or b"null")
    except ValueError as exc:
        raise RAGError(f"the request body is not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise RAGError("the request body must be a JSON object")
    return body


def field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = None,
          required: bool = False) -> Any:
    """``body[name]`` checked against ``kind`` (``bool`` is never taken for ``int``)."""
    if name not in body or body[name] is None:
        if required:
            raise RAGError(f"{name} is required", param=name)
        return default
    value = body[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise RAGError(f"{name} must be of type {names}, got {type(value).__name__}",
                       param=name)
    return value


async def read_upload(request: Any, limit: int, name: str) -> bytes:
    """The raw request body, refused with 413 as soon as it is known to exceed ``limit``:
    from ``Content-Length`` before reading anything, else while it streams in."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise DocumentTooLarge(f"{name}: {declared} bytes is over the {limit}-byte limit "
                               "([rag] max_file_bytes)", param="file")
    parts, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise DocumentTooLarge(f"{name}: over the {limit}-byte limit ([rag] "
                                   "max_file_bytes)", param="file")
        parts.append(part)
    return b"".join(parts)


class RagEndpoint(Endpoint):
    """Adds the RAG routes and ``/v1/embeddings`` (see :mod:`forge_plugin_rag.routes`)."""

    name = "rag"

    def mount(self, app: Any, server: Any) -> None:
        from fastapi.responses import JSONResponse

        from forge_plugin_rag import routes
        from forge_plugin_rag.config import RagConfig
        from forge_plugin_rag.embeddings import mount_embeddings

        config = getattr(server, "config", None)
        section = config.section("rag") if config is not None else None
        app.state.rag_config = RagConfig.from_section(section)

        @app.exception_handler(RAGError)
        async def rag_error(_request: Any, exc: RAGError) -> JSONResponse:
            return JSONResponse(error_json(exc.status, exc.message, exc.param, exc.code),
                                status_code=exc.status)

        app.add_exception_handler(ModelNotFound, rag_error)  # the kernel's: same fields

        app.include_router(routes.router)
        mount_embeddings(app)


async def in_thread(fn: Any, *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)
