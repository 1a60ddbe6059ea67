"""Hook implementations: the ``auth`` middleware, its ``[auth]`` config section and the
``forge keys`` commands."""

from __future__ import annotations

import os
from typing import Any

from forge_kernel import hookimpl
from forge_kernel.interfaces.endpoint import Middleware


class AuthLayer(Middleware):
    """Registers :class:`~forge_plugin_auth.middleware.AuthMiddleware` around the server app.

    Auth is on when a static key is configured (``--api-key`` / ``FORGE_API_KEY``) or any key
    was ever created with ``forge keys create``.
    """

    name = "auth"
    order = 20  # inside metrics (10), so refused requests are still counted

    def wrap(self, app: Any, server: Any) -> Any:
        from forge_plugin_auth.config import AuthConfig
        from forge_plugin_auth.keys import KeyStore
        from forge_plugin_auth.middleware import AuthMiddleware

        config = getattr(server, "config", None)
        static = getattr(config, "api_key", None) or os.environ.get("FORGE_API_KEY") or None
        section = AuthConfig.from_section(config.section("auth") if config is not None else None)
        middleware = AuthMiddleware(app, KeyStore(), static_key=static,
                                    public_metrics=section.public_metrics)
        if not middleware.enabled():
            from forge_kernel.log import get_logger

            get_logger("forge.auth").warning(
                "no API key configured: requests are not authenticated until a key is created "
                "(forge keys create) or --api-key / FORGE_API_KEY is set",
                store=str(middleware.store.path))
        return middleware


@hookimpl
def forge_register_endpoints(register) -> None:
    register("auth", AuthLayer)


@hookimpl
def forge_register_config_sections(register) -> None:
    from forge_plugin_auth.config import AuthConfig

    register("auth", AuthConfig)


@hookimpl
def forge_register_commands(cli) -> None:
    from forge_plugin_auth.cli import keys_group

    cli.add_command(keys_group)
