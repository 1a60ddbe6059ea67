"""The engine: request -> scheduler -> model -> KV cache -> sampler -> output, in one loop
(docs/architecture.md). Its modules import torch, so the CLI imports them only in commands
that run models; endpoints share one :class:`~forge_kernel.engine.async_engine.AsyncEngine`."""
