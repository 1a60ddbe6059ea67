"""Turning a validated request body into engine prompts and sampling parameters — the same
steps, in the same order, as ``POST /v1/chat/completions`` and ``POST /v1/completions``
(:mod:`forge_plugin_openai.completions`), so both APIs accept and reject the same requests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from forge_plugin_openai.errors import model_not_found
from forge_plugin_openai.protocol import ChatCompletionRequest, CompletionRequest

from forge_kernel.engine.types import SamplingParams


@dataclass(slots=True)
class Prepared:
    """A request ready for the engine: one token list per prompt (chat: exactly one)."""

    chat: bool
    request_id: str
    prompts: list[list[int]]
    params: SamplingParams
    prompt_param: str
    echoes: list[str]
    """Per prompt, text sent ahead of the generated text (completion ``echo``), else ``""``."""

    @property
    def num_choices(self) -> int:
        return len(self.prompts) * self.params.n


def prepare(server: Any, body: ChatCompletionRequest | CompletionRequest) -> Prepared:
    """Render, tokenize and validate; raises :class:`forge_plugin_openai.errors.APIError` or
    :class:`forge_kernel.engine.types.InvalidRequest` exactly where the HTTP API would."""
    if not server.serves(body.model):
        raise model_not_found(body.model)
    engine = server.engine
    tokenizer = engine.tokenizer
    prompts = body.prompt_ids(tokenizer)
    params = body.to_params(engine.generation_defaults())
    if isinstance(body, ChatCompletionRequest):
        prompt_param, echoes = "messages", [""]
    else:
        prompt_param = "prompt"
        echoes = [tokenizer.decode(ids) if body.echo else "" for ids in prompts]
    for ids in prompts:
        engine.validate(ids, params, prompt_param)
    prefix = "wschat" if prompt_param == "messages" else "wscmpl"
    return Prepared(prompt_param == "messages", f"{prefix}-{uuid.uuid4().hex}", prompts, params,
                    prompt_param, echoes)
