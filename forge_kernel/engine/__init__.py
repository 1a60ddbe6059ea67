"""The engine: request -> scheduler -> runner -> sampler -> output, in one loop.

Importing this package imports nothing heavy; its modules import torch, so the CLI imports them
only inside commands that run models.

Endpoint usage (every endpoint shares one :class:`~forge_kernel.engine.async_engine.AsyncEngine`)::

    from forge_kernel.engine.builder import build_engine
    from forge_kernel.engine.config import EngineConfig
    from forge_kernel.engine.async_engine import AsyncEngine
    from forge_kernel.engine.types import SamplingParams, InvalidRequest

    engine = AsyncEngine(build_engine(EngineConfig(model=None, kv_cache="paged")))
    engine.start()
    engine.validate(prompt_ids, params, prompt_param="messages")  # InvalidRequest -> HTTP 400
    async for delta in engine.generate(request_id, prompt_ids, params, prompt_param="messages"):
        ...  # CompletionDelta: index, text, token_ids, logprobs, finish_reason, usage (last)
    await engine.shutdown()

Modules: ``config`` (EngineConfig), ``builder`` (build_engine), ``engine`` (LLMEngine.step, the
loop), ``async_engine`` (AsyncEngine), ``request`` (validation, per-request state), ``sampler``
(logits -> tokens), ``stop`` (detokenization and stop conditions), ``types`` (shared contract).
"""
