"""The ``openai`` endpoint: mounts the OpenAI-compatible routes."""

from __future__ import annotations

import time
from typing import Any

from forge_kernel.interfaces.endpoint import Endpoint


class OpenAIEndpoint(Endpoint):
    name = "openai"

    def mount(self, app: Any, server: Any) -> None:
        from forge_kernel import __version__
        from forge_plugin_openai import chat, completions, misc
        from forge_plugin_openai.errors import install_error_handlers

        backend = server.components.get("backend", "cpu")
        app.state.fingerprint = f"fp_forge_{__version__}_{backend}"
        app.state.started = int(time.time())
        install_error_handlers(app)
        app.include_router(chat.router)
        app.include_router(completions.router)
        app.include_router(misc.router)
