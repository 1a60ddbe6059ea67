"""Hook implementations: the ``auth`` middleware and the ``forge keys`` commands."""

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
        from forge_plugin_auth.keys import KeyStore
        from forge_plugin_auth.middleware import AuthMiddleware

        config = getattr(server, "config", None)
        static = getattr(config, "api_key", None) or os.environ.get("FORGE_API_KEY") or None
        return AuthMiddleware(app, KeyStore(), static_key=static)


@hookimpl
def forge_register_endpoints(register) -> None:
    register("auth", AuthLayer)


@hookimpl
def forge_register_commands(cli) -> None:
    from forge_plugin_auth.cli import keys_group

    cli.add_command(keys_group)
