"""Assembling the HTTP server from plugins (used by ``forge serve``).

:func:`build_app` creates the FastAPI application, mounts every registered
:class:`~forge_kernel.interfaces.endpoint.Endpoint` and wraps the result in every registered
:class:`~forge_kernel.interfaces.endpoint.Middleware` (lowest ``order`` outermost), so plugins
compose without knowing each other: auth and metrics cover routes a third-party plugin adds.
FastAPI is imported only here, when serving.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from forge_kernel.interfaces.endpoint import Endpoint, Middleware


@dataclass(slots=True, eq=False)
class ServerContext:
    """What endpoints and middlewares get: the running engine and the server's settings."""

    engine: Any
    """The :class:`forge_kernel.engine.async_engine.AsyncEngine` serving requests."""
    model_name: str
    config: Any
    """The effective :class:`forge_kernel.config.ForgeConfig`."""
    registry: Any
    """The plugin registry (``registry.implementations(kind)``)."""
    host: Any = None
    """The :class:`forge_kernel.plugins.PluginHost` (plugin statuses, hooks)."""
    aliases: set[str] = field(default_factory=set)
    """Other names clients may use for the served model (file name, path)."""
    components: dict[str, str] = field(default_factory=dict)
    """Implementation chosen per kind (``backend``: ``cpu``, ...), for banners and health."""

    def serves(self, model: str | None) -> bool:
        """Whether a request's ``model`` names the served model."""
        return model is None or model == self.model_name or model in self.aliases


def build_app(context: ServerContext) -> Any:
    """The ASGI application: a FastAPI app with every endpoint, wrapped in every middleware."""
    from fastapi import FastAPI

    from forge_kernel import __version__

    app = FastAPI(title="forge", version=__version__)
    app.state.forge = context
    endpoints, middlewares = [], []
    for impl in context.registry.implementations("endpoint"):
        obj = impl.factory()
        if isinstance(obj, Middleware):
            middlewares.append(obj)
        elif isinstance(obj, Endpoint):
            endpoints.append(obj)
        else:
            raise TypeError(f"plugin {impl.plugin!r} registered endpoint {impl.name!r} that is "
                            f"neither an Endpoint nor a Middleware: {type(obj).__name__}")
    for endpoint in endpoints:
        endpoint.mount(app, context)
    wrapped: Any = app
    for middleware in sorted(middlewares, key=lambda m: m.order, reverse=True):
        wrapped = middleware.wrap(wrapped, context)
    return wrapped
