"""``POST /v1/embeddings`` for the retrieval embedding model (OpenAI request/response shape).

The OpenAI plugin may already serve ``/v1/embeddings`` with the generative model's pooled
hidden states. Both coexist: this route is put first and answers requests whose ``model`` names
the embedding model (``all-MiniLM-L6-v2``, also with its ``sentence-transformers/`` prefix);
any other request is handed, body intact, to the next route that matches the path, whichever
plugin added it. It is a raw ASGI route so it can do that hand-over without knowing that
plugin's code.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from forge_kernel.errors import ModelNotFound
from forge_plugin_rag.embedder import DIMENSIONS, MODEL_NAME
from forge_plugin_rag.endpoint import error_json, in_thread
from forge_plugin_rag.errors import RAGError

PATH = "/v1/embeddings"
NAMES = {MODEL_NAME, f"sentence-transformers/{MODEL_NAME}"}
MAX_INPUTS = 2048
"""OpenAI's limit on inputs per request."""


def _inputs(body: dict[str, Any]) -> list[str]:
    raw = body.get("input")
    if isinstance(raw, str):
        items = [raw]
    elif isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        items = raw
    elif isinstance(raw, list) and raw and all(isinstance(x, (int, list)) for x in raw):
        raise RAGError(f"token-id input is not supported by {MODEL_NAME} (its ids are not the "
                       "client's tokenizer's); send strings (LangChain: "
                       "OpenAIEmbeddings(check_embedding_ctx_length=False))", param="input")
    else:
        raise RAGError("input must be a string or a list of strings", param="input")
    if not items or any(not x for x in items):
        raise RAGError("input must not be empty (nor contain empty strings)", param="input")
    if len(items) > MAX_INPUTS:
        raise RAGError(f"at most {MAX_INPUTS} inputs per request, got {len(items)}",
                       param="input")
    return items


async def embeddings_response(body: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI ``/v1/embeddings`` response for a request naming the embedding model."""
    import numpy as np

    from forge_kernel.usage import report_usage
    from forge_plugin_rag.embedder import shared_embedder

    items = _inputs(body)
    dimensions = body.get("dimensions")
    if dimensions is not None and dimensions != DIMENSIONS:
        raise RAGError(f"{MODEL_NAME} has {DIMENSIONS} dimensions; other sizes are not "
                       "supported", param="dimensions")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise RAGError("encoding_format must be 'float' or 'base64'", param="encoding_format")
    embedder = await in_thread(shared_embedder)
    vectors, tokens = await in_thread(lambda: (embedder.embed(items),
                                               embedder.count_tokens(items)))
    data = []
    for i, vector in enumerate(vectors):
        value: Any = vector.tolist()
        if encoding == "base64":  # what the openai SDK asks for by default
            value = base64.b64encode(np.asarray(vector, "<f4").tobytes()).decode()
        data.append({"object": "embedding", "index": i, "embedding": value})
    prompt_tokens = sum(tokens)
    report_usage(prompt_tokens, 0)  # counts against a key's tokens-per-minute like the others
    return {"object": "list", "data": data, "model": MODEL_NAME,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}


class EmbeddingsRoute:
    """ASGI app of the route (see the module docstring)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.route: Any = None  # set by mount_embeddings: skipped when looking for the next

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        from starlette.responses import JSONResponse

        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        model = body.get("model") if isinstance(body, dict) else None
        try:
            if model not in NAMES:
                if await self._hand_over(scope, raw, receive, send):
                    return
                if not isinstance(body, dict):
                    raise RAGError("the request body must be a JSON object")
                raise ModelNotFound(f"The model `{model}` does not exist; embeddings are served "
                                    f"by `{MODEL_NAME}`.", param="model")
            response = JSONResponse(await embeddings_response(body))
        except (RAGError, ModelNotFound) as exc:
            response = JSONResponse(error_json(exc.status, exc.message, exc.param, exc.code),
                                    status_code=exc.status)
        await response(scope, receive, send)

    async def _hand_over(self, scope: dict, raw: bytes, receive: Any, send: Any) -> bool:
        """Give the request to the next route matching it; False when there is none."""
        from starlette.routing import Match

        for route in self.app.router.routes:
            if route is self.route:
                continue
            match, child = route.matches(scope)
            if match is Match.FULL:
                sent = False

                async def replay() -> dict:
                    nonlocal sent
                    if sent:  # the body was replayed: what comes next is the client's
                        return await receive()
                    sent = True
                    return {"type": "http.request", "body": raw, "more_body": False}

                await route.handle({**scope, **child}, replay, send)
                return True
        return False


def mount_embeddings(app: Any) -> None:
    """Put the route before any other ``/v1/embeddings`` route of ``app``."""
    from starlette.routing import Route

    handler = EmbeddingsRoute(app)
    route = Route(PATH, handler, methods=["POST"], name="rag_embeddings",
                  include_in_schema=False)
    handler.route = route
    app.router.routes.insert(0, route)
