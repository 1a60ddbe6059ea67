"""The ``[cache]`` configuration section (file table or ``FORGE_CACHE_*``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from forge_kernel.errors import ConfigError

BACKENDS = ("memory", "disk", "redis")


@dataclass(slots=True)
class CacheConfig:
    """Settings of the response cache. Off unless ``enabled``: a cache changes what a repeated
    request costs and which engine work it triggers, so a deployment opts in."""

    enabled: bool = False
    backends: str = "memory"
    """Comma-separated tiers, looked up in order (``memory,disk,redis``); a hit in a later tier
    is copied into the earlier ones, a new answer is written to all of them."""
    share_across_keys: bool = False
    """Serve one API key's cached answers to other keys (off: keys never see each other's)."""
    ttl_seconds: float = 86400.0
    """Entries older than this are misses (0: no expiry)."""
    max_entry_bytes: int = 1 << 20
    """Larger responses are not stored."""
    memory_max_bytes: int = 64 << 20
    disk_path: str = ""
    """Directory of the disk tier (default ``FORGE_HOME/cache/responses``)."""
    disk_max_bytes: int = 1 << 30
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "forge:cache:"
    redis_timeout_seconds: float = 0.5
    """Socket timeout of one Redis call: a slow Redis must not stall requests."""
    redis_retry_seconds: float = 10.0
    """After a Redis failure the tier is bypassed for this long, then tried again."""
    semantic: bool = False
    """Also answer requests whose prompt is *similar* (cosine of MiniLM embeddings) to a cached
    one with otherwise identical parameters."""
    semantic_threshold: float = 0.95
    semantic_max_entries: int = 10000

    @classmethod
    def from_section(cls, section: Any) -> CacheConfig:
        """From ``config.section("cache")`` (an instance, a dict, or nothing), validated."""
        config = section if isinstance(section, cls) else cls(**dict(section or {}))
        config.validate()
        return config

    def tiers(self) -> list[str]:
        """The configured backends, in lookup order."""
        return [name.strip() for name in self.backends.split(",") if name.strip()]

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the bad key."""
        tiers = self.tiers()
        unknown = [t for t in tiers if t not in BACKENDS]
        if unknown or not tiers or len(set(tiers)) != len(tiers):
            raise ConfigError(f"cache.backends: expected a comma-separated list of distinct "
                              f"{', '.join(BACKENDS)}; got {self.backends!r}")
        for key in ("max_entry_bytes", "memory_max_bytes", "disk_max_bytes",
                    "semantic_max_entries"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"cache.{key}: must be positive, got {getattr(self, key)}")
        if self.ttl_seconds < 0:
            raise ConfigError(f"cache.ttl_seconds: must be >= 0, got {self.ttl_seconds}")
        if not 0.0 < self.semantic_threshold <= 1.0:
            raise ConfigError("cache.semantic_threshold: must be in (0, 1], got "
                              f"{self.semantic_threshold}")
        if self.redis_timeout_seconds <= 0 or self.redis_retry_seconds < 0:
            raise ConfigError("cache.redis_timeout_seconds must be > 0 and "
                              "cache.redis_retry_seconds >= 0")
