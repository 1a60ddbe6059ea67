"""Hook implementations: the ``cache`` middleware and its ``[cache]`` config section.

The cache is built in ``forge_startup`` (so a bad setting or a missing semantic model refuses
start-up with a reason) and closed in ``forge_shutdown``; the middleware wraps the app inside
auth (it needs the admitted key's name, and must never answer an unauthenticated request).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forge_kernel import hookimpl
from forge_kernel.interfaces.endpoint import Middleware
from forge_kernel.log import get_logger

log = get_logger("forge.cache")
_built: dict[int, Any] = {}  # id(server context) -> ResponseCache


def _config(server: Any):
    from forge_plugin_cache.config import CacheConfig

    config = getattr(server, "config", None)
    return CacheConfig.from_section(config.section("cache") if config is not None else None)


def build_cache(config: Any):
    """The :class:`~forge_plugin_cache.store.ResponseCache` that ``config`` describes."""
    from forge_kernel.config import forge_home
    from forge_plugin_cache.backends.disk import DiskBackend
    from forge_plugin_cache.backends.memory import MemoryBackend
    from forge_plugin_cache.store import ResponseCache

    tiers = []
    for name in config.tiers():
        if name == "memory":
            tiers.append(MemoryBackend(config.memory_max_bytes))
        elif name == "disk":
            root = Path(config.disk_path).expanduser() if config.disk_path \
                else forge_home() / "cache" / "responses"
            tiers.append(DiskBackend(root, config.disk_max_bytes))
        else:
            from forge_plugin_cache.backends.redis_tier import RedisBackend

            tiers.append(RedisBackend(config.redis_url, config.redis_prefix,
                                      config.ttl_seconds, config.redis_timeout_seconds,
                                      config.redis_retry_seconds))
    semantic = None
    if config.semantic:
        from forge_plugin_cache.semantic import MiniLMEmbedder, SemanticIndex

        semantic = SemanticIndex(MiniLMEmbedder().embed, config.semantic_threshold,
                                 config.semantic_max_entries)
    return ResponseCache(tiers, config.ttl_seconds, config.max_entry_bytes, semantic)


class CacheLayer(Middleware):
    """Registers :class:`~forge_plugin_cache.middleware.CacheMiddleware` when
    ``[cache] enabled`` is true (the app is returned unchanged otherwise)."""

    name = "cache"
    order = 30  # inside metrics (10) and auth (20): sees only admitted requests, and who sent them

    def wrap(self, app: Any, server: Any) -> Any:
        config = _config(server)
        if not config.enabled:
            return app
        from forge_plugin_cache.keys import model_fingerprint
        from forge_plugin_cache.metrics import register_metrics
        from forge_plugin_cache.middleware import CacheMiddleware

        cache = _built.get(id(server))
        if cache is None:  # an app built without the lifecycle hooks (embedding forge)
            cache = _built[id(server)] = build_cache(config)
        register_metrics(server, cache)
        fingerprint = model_fingerprint(getattr(server, "model_name", "") or "",
                                        set(getattr(server, "aliases", ()) or ()))
        return CacheMiddleware(app, cache, fingerprint, config.share_across_keys)


@hookimpl
def forge_register_endpoints(register) -> None:
    register("cache", CacheLayer)


@hookimpl
def forge_register_config_sections(register) -> None:
    from forge_plugin_cache.config import CacheConfig

    register("cache", CacheConfig)


@hookimpl
def forge_startup(context: Any) -> None:
    from forge_kernel.errors import ForgeError, StartupRefused

    try:
        config = _config(context)
        if not config.enabled:
            return
        cache = _built[id(context)] = build_cache(config)
    except ForgeError as exc:
        raise StartupRefused(str(exc)) from None
    except (ImportError, OSError) as exc:  # semantic model not installed, unwritable disk dir
        raise StartupRefused(f"response cache: {type(exc).__name__}: {exc}") from None
    log.info("response cache on", tiers=",".join(t.name for t in cache.tiers),
             semantic=cache.semantic is not None, share_across_keys=config.share_across_keys,
             ttl_seconds=config.ttl_seconds)


@hookimpl
def forge_shutdown(context: Any) -> None:
    import asyncio

    cache = _built.pop(id(context), None)
    if cache is not None:
        asyncio.run(cache.close())
