"""Build an :class:`LLMEngine` from an :class:`EngineConfig`: resolve every implementation by
name through the plugin registry once, then hand the objects to the engine."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from forge_kernel.engine.config import EngineConfig, display_name, locate_model
from forge_kernel.engine.engine import LLMEngine
from forge_kernel.errors import ConfigError, MissingPluginError, UnknownImplementationError
from forge_kernel.plugins import get_host

PLUGIN_FOR = {
    ("backend", "cpu"): "forge-plugin-cpu",
    ("kv_cache", "paged"): "forge-plugin-kv-paged",
    ("kv_cache", "naive"): "forge-plugin-kv-naive",
    ("scheduler", "continuous"): "forge-plugin-scheduler",
    ("speculator", "ngram"): "forge-plugin-speculative",
    ("speculator", "draft"): "forge-plugin-speculative",
}
"""Which distribution provides the built-in names (for "install X" hints)."""


def resolve_model_path(model: str | Path | None) -> Path:
    """:func:`~forge_kernel.engine.config.locate_model` with the process-wide plugin host."""
    return locate_model(get_host(), model)


DEFAULT_KV_TOKENS = 4096
"""Tokens the default KV budget holds: one 4096-token request, or e.g. 64 sequences of 64."""


def default_kv_budget(bytes_per_token: int, max_model_len: int | None = None) -> int:
    """Without ``kv_memory_bytes`` or ``num_blocks``: room for ``max(DEFAULT_KV_TOKENS,
    max_model_len)`` tokens, at most 512 MiB (Gemma 3 270M gets 144 MiB)."""
    from forge_kernel.interfaces.kv_cache import KVCacheConfig

    tokens = max(DEFAULT_KV_TOKENS, max_model_len or 0)
    return min(KVCacheConfig().memory_budget_bytes, tokens * int(bytes_per_token))


def _create(kind: str, name: str, *args, **kwargs):
    registry = get_host().registry
    try:
        return registry.create(kind, name, *args, **kwargs)
    except UnknownImplementationError as exc:
        dist = PLUGIN_FOR.get((kind, name))
        if dist is None:
            raise
        raise MissingPluginError(f"{exc}; install it with: pip install {dist}") from None


DEFAULT_KV_CACHE = "paged"
"""The KV cache when neither the user nor the backend (``preferred_kv_cache``) names one."""


def _create_backend(config: EngineConfig):
    """The backend; ``device=`` only with ``--device``, refused clearly by one-device backends."""
    if config.device is None:
        return _create("backend", config.backend, threads=config.threads)
    registry = get_host().registry
    if config.backend in registry.names("backend") and not _accepts(
            registry.get("backend", config.backend).factory, "device"):
        raise ConfigError(f"backend {config.backend!r} has no device choice; drop --device "
                          f"{config.device}")
    return _create("backend", config.backend, threads=config.threads, device=config.device)


def _accepts(factory, name: str) -> bool:
    import inspect

    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return True  # not introspectable: let the call decide
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in params)


def _check(config: EngineConfig) -> None:
    for field in ("max_batch_size", "max_prefill_tokens", "block_size"):
        value = getattr(config, field)
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{field} must be a positive integer, got {value!r}")
    for field in ("num_blocks", "kv_memory_bytes", "threads", "max_model_len"):
        value = getattr(config, field)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"{field} must be a positive integer, got {value!r}")
    if config.device is not None and (not isinstance(config.device, int) or config.device < 0):
        raise ConfigError(f"device must be a non-negative integer, got {config.device!r}")


def build_engine(config: EngineConfig | None = None) -> LLMEngine:
    """Load the model and create backend, KV cache and scheduler named in ``config``; raises
    ``ModelFormatError``, ``MissingPluginError`` (naming what to install) or ``ConfigError``."""
    result: dict[str, object] = {}

    def load() -> None:
        try:
            result["engine"] = _build(config)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = exc

    # On a short-lived thread: GNU OpenMP parks a worker pool per thread that ran a parallel
    # region, and loading on the caller's thread made each engine-thread decode step 21 -> 35
    # ms on two cores; this thread's pools exit with it. Daemon: Ctrl-C still ends a long load.
    loader = threading.Thread(target=load, name="forge-load", daemon=True)
    loader.start()
    loader.join()
    if "error" in result:
        raise result["error"]
    return result["engine"]


def _build(config: EngineConfig | None) -> LLMEngine:
    from forge_kernel.interfaces.kv_cache import KVCacheConfig
    from forge_kernel.interfaces.scheduler import SchedulerConfig
    from forge_kernel.modeling import build_causal_lm, open_model_source

    config = config or EngineConfig()
    _check(config)
    path = resolve_model_path(config.model)
    backend = _create_backend(config)
    # The built engine's config says what was chosen: the model's path and served name, and
    # with no cache named the backend's own choice (device caches for GPU backends), else paged.
    config = dataclasses.replace(
        config, model=path, model_name=config.model_name or display_name(config.model),
        kv_cache=config.kv_cache or backend.preferred_kv_cache or DEFAULT_KV_CACHE)
    source = open_model_source(path, config.loader)
    model = build_causal_lm(source, backend)
    spec = model.kv_cache_spec()
    kv_kwargs = {"block_size": config.block_size, "num_blocks": config.num_blocks}
    if config.kv_memory_bytes is not None:
        kv_kwargs["memory_budget_bytes"] = config.kv_memory_bytes
    elif config.num_blocks is None:
        kv_kwargs["memory_budget_bytes"] = default_kv_budget(spec.bytes_per_token,
                                                             config.max_model_len)
    kv_config = KVCacheConfig(**kv_kwargs)
    context = int(model.config.context_length)
    if config.max_model_len is not None and config.max_model_len > context:
        raise ConfigError(f"max_model_len={config.max_model_len} exceeds the model's context "
                          f"length {context} ({path})")
    wanted = config.max_model_len or context
    # Ask the cache its capacity first: a default max_model_len never exceeds what fits.
    spec = dataclasses.replace(spec, max_model_len=wanted)
    kv_cache = _create("kv_cache", config.kv_cache, spec, kv_config)
    capacity = kv_cache.capacity_tokens()
    if capacity < 2:
        raise ConfigError(f"the KV cache holds {capacity} tokens; raise --num-blocks or the "
                          f"KV memory budget")
    max_model_len = wanted if config.max_model_len is not None else min(wanted, capacity)
    if max_model_len != spec.max_model_len:
        spec = dataclasses.replace(spec, max_model_len=max_model_len)
        kv_cache = _create("kv_cache", config.kv_cache, spec, kv_config)
    sched_config = SchedulerConfig(max_batch_size=config.max_batch_size,
                                   max_prefill_tokens=config.max_prefill_tokens,
                                   max_model_len=max_model_len)
    scheduler = _create("scheduler", config.scheduler, sched_config, kv_cache)
    speculator = None
    if config.speculative:
        method = str(config.speculative).partition(":")[0].strip()
        speculator = _create("speculator", method, config, model=model,
                             tokenizer=source.tokenizer, backend=backend, kv_cache=kv_cache)
    return LLMEngine(model, source.tokenizer, kv_cache, scheduler, max_model_len=max_model_len,
                     model_name=config.model_name, metadata=dict(source.metadata), config=config,
                     speculator=speculator)
