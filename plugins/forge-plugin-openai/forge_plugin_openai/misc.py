"""``/v1/models``, ``/v1/embeddings``, ``/tokenize`` and ``/detokenize``."""

from __future__ import annotations

import base64
import struct
from typing import Any

from fastapi import APIRouter, Request
from forge_plugin_protocol.errors import APIError, model_not_found
from forge_plugin_protocol.models import model_ids, resolve_model
from forge_plugin_protocol.protocol import DetokenizeRequest, EmbeddingRequest, TokenizeRequest

from forge_kernel.engine.types import InvalidRequest
from forge_kernel.usage import report_usage

router = APIRouter()


def _model_card(request: Request, model_id: str, parent: str | None) -> dict[str, Any]:
    server = request.app.state.forge
    card = {"id": model_id, "object": "model", "created": request.app.state.started,
            "owned_by": "forge", "max_model_len": server.engine.max_model_len}
    if parent is not None:  # a LoRA adapter (vLLM lists them with their base as parent)
        card["parent"] = parent
    return card


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    ids = model_ids(request.app.state.forge)
    return {"object": "list", "data": [_model_card(request, *item) for item in ids]}


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    server = request.app.state.forge
    adapter = resolve_model(server, model_id)  # 404 for a model not served
    if adapter is None:
        return _model_card(request, server.model_name, None)
    return _model_card(request, f"{server.model_name}:{adapter}", server.model_name)


@router.get("/v1/forge/stats")
async def engine_stats(request: Request) -> dict[str, Any]:
    """The engine's load (running, waiting, KV usage and free tokens, preemptions): a debug
    view that needs no other plugin; tests read it to check aborts free the KV cache."""
    import dataclasses

    return dataclasses.asdict(request.app.state.forge.engine.stats())


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request) -> dict[str, Any]:
    """Mean-pooled, final-normed hidden states (see the README: a generative model's embedding,
    useful for similarity within that model, not a trained embedding model)."""
    server = request.app.state.forge
    if not server.serves(body.model):
        raise model_not_found(body.model)
    if body.dimensions is not None:
        raise InvalidRequest("dimensions is not supported", param="dimensions",
                             code="unsupported_parameter")
    raw = body.input
    items = [raw] if isinstance(raw, str) or (raw and isinstance(raw[0], int)) else list(raw)
    if not items or any(len(x) == 0 for x in items):
        raise InvalidRequest("input must not be empty", param="input")
    tokenizer = server.engine.tokenizer
    ids = [tokenizer.encode(x) if isinstance(x, str) else list(x) for x in items]
    try:
        vectors = await server.engine.embed(ids)
    except NotImplementedError as exc:
        raise APIError(400, f"this model cannot produce embeddings: {exc}", "model",
                       "unsupported_model") from None
    data = []
    for i, vector in enumerate(vectors):
        value: Any = vector
        if body.encoding_format == "base64":
            value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": value})
    prompt_tokens = sum(len(x) for x in ids)
    report_usage(prompt_tokens, 0)  # embeddings count against per-key token limits too
    usage = usage_json_embed(prompt_tokens)
    return {"object": "list", "data": data, "model": server.model_name, "usage": usage}


def usage_json_embed(prompt_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}


@router.post("/tokenize")
async def tokenize(body: TokenizeRequest, request: Request) -> dict[str, Any]:
    server = request.app.state.forge
    if not server.serves(body.model):
        raise model_not_found(body.model)
    tokenizer = server.engine.tokenizer
    if (body.prompt is None) == (body.messages is None):
        raise InvalidRequest("give exactly one of prompt or messages", param="prompt")
    if body.messages is not None:
        text = tokenizer.apply_chat_template([m.model_dump(exclude_none=True)
                                              for m in body.messages])
        tokens = tokenizer.encode(text, add_special_tokens=False)
    else:
        tokens = tokenizer.encode(body.prompt, add_special_tokens=body.add_special_tokens)
    return {"tokens": tokens, "count": len(tokens), "max_model_len": server.engine.max_model_len}


@router.post("/detokenize")
async def detokenize(body: DetokenizeRequest, request: Request) -> dict[str, Any]:
    server = request.app.state.forge
    if not server.serves(body.model):
        raise model_not_found(body.model)
    tokenizer = server.engine.tokenizer
    bad = [t for t in body.tokens if not 0 <= t < tokenizer.vocab_size]
    if bad:
        raise InvalidRequest(f"token ids out of range [0, {tokenizer.vocab_size}): {bad[:5]}",
                             param="tokens")
    return {"prompt": tokenizer.decode(body.tokens)}

