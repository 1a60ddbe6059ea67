"""The engine: request -> scheduler -> model -> KV cache -> sampler -> output, in one loop.

Importing this package imports nothing heavy; its modules import torch, so the CLI imports them
only inside commands that run models. Endpoints share one
:class:`~forge_kernel.engine.async_engine.AsyncEngine` (``validate`` before headers, then
``async for delta in engine.generate(request_id, prompt_ids, params)``). Modules: ``config``,
``builder`` (build_engine), ``engine`` (LLMEngine.step), ``async_engine``, ``request``
(validation, per-request state, the n > 1 policy), ``sampler``, ``stop`` (detokenization and
stop conditions), ``attention`` (reference attention), ``types`` (the endpoint contract).
"""
