"""The ``/v1/rag`` routes.

* ``GET /v1/rag/collections`` — names and sizes;
* ``DELETE /v1/rag/{collection}`` — the whole collection;
* ``PUT /v1/rag/{collection}/documents/{name}`` — upload a file (raw body; the name's extension
  picks the loader); unchanged content indexes nothing (``"status": "unchanged"``);
* ``GET /v1/rag/{collection}/documents``, ``DELETE /v1/rag/{collection}/documents/{ref}``;
* ``POST /v1/rag/{collection}/query`` — ``{"query", "k", "max_tokens", "temperature",
  "stream", "generate"}``: the answer from the served model with numbered sources
  (``generate: false``: sources only). Streaming sends one ``rag.sources`` event, then
  ``rag.delta`` events, then ``rag.done`` with the usage, then ``[DONE]`` (SSE).
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from forge_kernel.errors import ModelNotFound
from forge_plugin_rag.endpoint import error_json, field, in_thread, json_body, read_upload
from forge_plugin_rag.errors import RAGError
from forge_plugin_rag.loaders import kind_of
from forge_plugin_rag.store import check_name, delete_collection, list_collections

router = APIRouter()


def _pipeline(request: Request, collection: str) -> Any:
    from forge_plugin_rag.pipeline import RAGPipeline

    return RAGPipeline(collection, config=request.app.state.rag_config)


@router.get("/v1/rag/collections")
async def collections(request: Request) -> dict[str, Any]:
    def describe() -> list[dict[str, Any]]:
        out = []
        for name in list_collections():
            docs = _pipeline(request, name).documents()
            out.append({"object": "rag.collection", "name": name, "documents": len(docs),
                        "chunks": sum(d.chunks for d in docs)})
        return out

    return {"object": "list", "data": await in_thread(describe)}


@router.delete("/v1/rag/{collection}")
async def delete_whole(collection: str) -> dict[str, Any]:
    await in_thread(delete_collection, check_name(collection))
    return {"object": "rag.collection.deleted", "name": collection, "deleted": True}


@router.put("/v1/rag/{collection}/documents/{name}")
async def upload(collection: str, name: str, request: Request) -> dict[str, Any]:
    check_name(collection)
    kind_of(name)  # an unsupported type is refused before the body is read
    data = await read_upload(request, request.app.state.rag_config.max_file_bytes, name)
    reindex = request.query_params.get("reindex", "false").lower() in ("1", "true", "yes")
    result = await in_thread(lambda: _pipeline(request, collection).add_bytes(data, name,
                                                                              reindex))
    return {"object": "rag.document.indexed", **result.as_json()}


@router.get("/v1/rag/{collection}/documents")
async def documents(collection: str, request: Request) -> dict[str, Any]:
    docs = await in_thread(lambda: _pipeline(request, collection).documents())
    return {"object": "list", "data": [d.as_json() for d in docs]}


@router.delete("/v1/rag/{collection}/documents/{ref}")
async def delete_document(collection: str, ref: str, request: Request) -> dict[str, Any]:
    doc = await in_thread(lambda: _pipeline(request, collection).remove_document(ref))
    return {"object": "rag.document.deleted", "deleted": True, "document": doc.as_json()}


@router.post("/v1/rag/{collection}/query")
async def query(collection: str, request: Request):
    from forge_plugin_rag.generator import prepare, stream_async

    body = await json_body(request)
    unknown = sorted(set(body) - {"query", "k", "max_tokens", "temperature", "stream",
                                  "generate", "model"})
    if unknown:
        raise RAGError(f"unknown field(s): {', '.join(unknown)}", param=unknown[0])
    question = field(body, "query", str, required=True)
    config = request.app.state.rag_config
    k = field(body, "k", int, config.top_k)
    max_tokens = field(body, "max_tokens", int, config.max_answer_tokens)
    temperature = float(field(body, "temperature", (int, float), config.temperature))
    stream, generate = field(body, "stream", bool, False), field(body, "generate", bool, True)
    if not 1 <= k <= 100:
        raise RAGError(f"k must be between 1 and 100, got {k}", param="k")
    if max_tokens < 1:
        raise RAGError("max_tokens must be at least 1", param="max_tokens")
    if not 0.0 <= temperature <= 2.0:
        raise RAGError("temperature must be between 0 and 2", param="temperature")
    server = request.app.state.forge
    model = field(body, "model", str)
    if model is not None and not server.serves(model):
        raise ModelNotFound(f"The model `{model}` does not exist (this server answers with "
                            f"`{server.model_name}`).", param="model")
    sources = await in_thread(lambda: _pipeline(request, collection).search(question, k))
    head = {"object": "rag.answer", "created": int(time.time()), "collection": collection,
            "model": server.model_name}
    if not generate:
        return {**head, "answer": None, "sources": [s.as_json() for s in sources]}
    ids, params = prepare(server.engine, question, sources, max_tokens, temperature)
    usage: dict[str, int] = {}
    deltas = stream_async(server.engine, ids, params, usage)
    if not stream:
        pieces = [p async for p in deltas]
        return {**head, "answer": "".join(pieces).strip(),
                "sources": [s.as_json() for s in sources], "usage": _usage(usage)}

    async def events():
        yield _sse({**head, "object": "rag.sources", "sources": [s.as_json() for s in sources]})
        try:
            async for piece in deltas:
                yield _sse({"object": "rag.delta", "delta": piece})
        except Exception as exc:  # headers are sent: report in-band, as OpenAI streams do
            status = getattr(exc, "status", 500)
            yield _sse(error_json(status, str(exc), getattr(exc, "param", None),
                                  getattr(exc, "code", None)))
        else:
            yield _sse({"object": "rag.done", "usage": _usage(usage)})
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


def _usage(usage: dict[str, int]) -> dict[str, int]:
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj)}\n\n"
