"""Text generation for answers: forge's own engine, synchronous (Python API and CLI) or through
the server's :class:`~forge_kernel.engine.async_engine.AsyncEngine` (endpoint).

Only the kernel's engine API is used (``build_engine``, ``generate``, ``tokenizer``), so the
plugin does not depend on how the OpenAI plugin is organised.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from forge_plugin_rag.answer import answer_prompt


def sampling_params(max_tokens: int, temperature: float, stop: list[str]) -> Any:
    from forge_kernel.engine.types import SamplingParams

    return SamplingParams(max_tokens=max_tokens, temperature=temperature, stop=stop)


class LocalGenerator:
    """Generates with a model loaded in this process (default: forge's default model, Gemma 3
    270M), built on first use. ``engine`` may be an already built ``LLMEngine``."""

    def __init__(self, model: str | None = None, engine: Any = None,
                 threads: int | None = None) -> None:
        self.model, self._engine, self.threads = model, engine, threads

    @property
    def engine(self) -> Any:
        if self._engine is None:
            from forge_kernel.engine.builder import build_engine
            from forge_kernel.engine.config import EngineConfig

            # build_engine resolves names (and None: the default model) itself
            config = EngineConfig(model=self.model, max_batch_size=1, threads=self.threads)
            self._engine = build_engine(config)
        return self._engine

    def stream(self, question: str, sources: list[Any], max_tokens: int, temperature: float,
               usage: dict[str, int] | None = None) -> Iterator[str]:
        """Yield the answer's text as it is generated; fills ``usage`` when given."""
        engine = self.engine
        ids, stop = answer_prompt(engine, question, sources)
        completion = 0
        for delta in engine.generate(ids, sampling_params(max_tokens, temperature, stop)):
            completion += len(delta.token_ids)
            if delta.text:
                yield delta.text
        if usage is not None:
            usage.update(prompt_tokens=len(ids), completion_tokens=completion)


def prepare(engine: Any, question: str, sources: list[Any], max_tokens: int,
            temperature: float) -> tuple[list[int], Any]:
    """Prompt ids and sampling params for a running ``AsyncEngine``, validated now (a prompt
    too long for the model is a :class:`RAGError` before any response is sent)."""
    from forge_kernel.engine.types import InvalidRequest
    from forge_plugin_rag.errors import RAGError

    ids, stop = answer_prompt(engine, question, sources)
    params = sampling_params(max_tokens, temperature, stop)
    try:
        engine.validate(ids, params, "query")
    except InvalidRequest as exc:
        raise RAGError(f"the question with its sources does not fit the model: {exc.message} "
                       "(ask for fewer sources, k, or fewer max_tokens)", param="k") from None
    return ids, params


async def stream_async(engine: Any, ids: list[int], params: Any,
                       usage: dict[str, int] | None = None) -> AsyncIterator[str]:
    """Stream an answer through a running ``AsyncEngine``: leaving early aborts the request
    (frees its KV); the usage is reported to the per-key token accounting (auth's tokens per
    minute), as the OpenAI routes do."""
    from forge_kernel.usage import report_usage

    async for delta in engine.generate(f"rag-{uuid.uuid4().hex}", ids, params, "query"):
        if delta.text:
            yield delta.text
        if delta.usage is not None:
            report_usage(delta.usage.prompt_tokens, delta.usage.completion_tokens)
            if usage is not None:
                usage.update(prompt_tokens=delta.usage.prompt_tokens,
                             completion_tokens=delta.usage.completion_tokens)
