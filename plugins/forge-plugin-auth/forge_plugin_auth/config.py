"""The ``[auth]`` configuration section (file table or ``FORGE_AUTH_*``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class AuthConfig:
    """Settings of the auth middleware (keys themselves live in ``FORGE_HOME/auth.sqlite3``)."""

    public_metrics: bool = False
    """Serve ``/metrics`` without a key (like the ``/health`` probes). Off by default: the
    metrics reveal the model, the routes and the load, so a scraper sends a key like any
    client (Prometheus: ``authorization: {credentials_file: ...}``)."""

    @classmethod
    def from_section(cls, section: Any) -> AuthConfig:
        """From ``config.section("auth")`` (an instance, a dict, or nothing)."""
        if isinstance(section, cls):
            return section
        return cls(**dict(section or {}))
