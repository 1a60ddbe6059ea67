"""The one ``prepare()``: a validated request body -> engine prompts and sampling parameters.

``POST /v1/chat/completions``, ``POST /v1/completions`` (forge-plugin-openai) and WebSocket
``chat``/``completion`` messages (forge-plugin-websocket) all call it, so both APIs accept and
reject the same requests, at the same step, with the same error."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from forge_kernel.engine.types import InvalidRequest, SamplingParams
from forge_plugin_protocol.models import resolve_model
from forge_plugin_protocol.protocol import ChatCompletionRequest, CompletionRequest


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
    tools: Any = None
    """The chat request's ``ToolSetup`` (forge-plugin-structured), ``None`` without tools:
    replies are parsed for tool calls with it."""

    @property
    def num_choices(self) -> int:
        return len(self.prompts) * self.params.n


def prepare(server: Any, body: ChatCompletionRequest | CompletionRequest,
            id_prefix: str | None = None, tool_calls: bool = True) -> Prepared:
    """Check the model, render the chat template, tokenize, convert the sampling parameters and
    validate every prompt against the engine (``server`` is the
    :class:`~forge_kernel.server.ServerContext`). Raises
    :class:`~forge_plugin_protocol.errors.APIError` (unknown model) or
    :class:`~forge_kernel.engine.types.InvalidRequest` (a bad parameter, a prompt too long).

    The request id is ``{id_prefix}-{hex}``; ``id_prefix`` defaults to OpenAI's ``chatcmpl`` /
    ``cmpl``. ``tool_calls=False``: the caller cannot return tool calls (the WebSocket API),
    so ``tools`` / ``forge_tools`` are a 400 ``unsupported_parameter`` (tool turns in the
    history are still rendered)."""
    adapter = resolve_model(server, body.model)  # 404 for a model not served
    engine = server.engine
    tokenizer = engine.tokenizer
    setup = None
    if isinstance(body, ChatCompletionRequest):
        if not tool_calls:
            refuse_tools(body)
        setup = body.tool_setup(server)
        prompts = body.prompt_ids(tokenizer, setup)
        params = body.to_params(engine.generation_defaults(), setup)
        prompt_param, echoes = "messages", [""]
    else:
        prompts = body.prompt_ids(tokenizer)
        params = body.to_params(engine.generation_defaults())
        prompt_param = "prompt"
        echoes = [tokenizer.decode(ids) if body.echo else "" for ids in prompts]
    params.adapter = adapter
    for ids in prompts:
        engine.validate(ids, params, prompt_param)
    chat = prompt_param == "messages"
    prefix = id_prefix or ("chatcmpl" if chat else "cmpl")
    return Prepared(chat, f"{prefix}-{uuid.uuid4().hex}", prompts, params,
                    prompt_param, echoes, setup)


def refuse_tools(body: ChatCompletionRequest) -> None:
    """400 for a request asking for tool calls where they cannot be returned."""
    for param, value in (("tools", body.tools), ("forge_tools", body.forge_tools)):
        if value:
            raise InvalidRequest(f"{param}: tool calling is served by POST /v1/chat/completions "
                                 f"only, not here", param=param, code="unsupported_parameter")
