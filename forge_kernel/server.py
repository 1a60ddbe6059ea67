"""The ``forge serve`` lifecycle (:func:`serve`), in the order docs/architecture.md lists; FastAPI
and uvicorn are imported only here."""

from __future__ import annotations

import asyncio
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forge_kernel.errors import MissingPluginError, StartupRefused
from forge_kernel.interfaces.endpoint import Endpoint, Middleware


@dataclass(slots=True, eq=False)
class ServerContext:
    """What endpoints and middlewares get: the running engine and the server's settings."""

    engine: Any
    """The :class:`~forge_kernel.engine.async_engine.AsyncEngine` serving requests."""
    model_name: str
    config: Any
    """The effective :class:`~forge_kernel.config.ForgeConfig`."""
    registry: Any
    host: Any = None
    """The :class:`~forge_kernel.plugins.PluginHost` (plugin statuses, hooks)."""
    aliases: set[str] = field(default_factory=set)
    """Other names clients may use for the served model (file name, path)."""
    components: dict[str, str] = field(default_factory=dict)
    """Implementation chosen per kind (``backend``: ``cpu``, ...), for banners and health."""

    def serves(self, model: str | None) -> bool:
        """Whether a request's ``model`` names the served model."""
        return model is None or model == self.model_name or model in self.aliases


def build_app(context: ServerContext) -> Any:
    """A FastAPI app with every endpoint, wrapped in every middleware (lowest ``order``
    outermost), so auth and metrics also cover routes other plugins add."""
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


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def check_servable(host: Any) -> None:
    """Say what to install when there is no endpoint plugin, compute backend or FastAPI."""
    from forge_kernel.engine.config import require_backend

    if not host.registry.names("endpoint"):
        raise MissingPluginError(
            "`forge serve` has nothing to serve: no endpoint plugin is installed or enabled.\n"
            "  pip install forge-plugin-openai\n(or forge-plugin-websocket; see `forge plugins`)")
    require_backend(host, "forge serve")
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise MissingPluginError(f"`forge serve` needs FastAPI and uvicorn ({exc}), which the "
                                 "endpoint plugins depend on: pip install forge-plugin-openai "
                                 "(or reinstall your endpoint plugin)") from None


def serve(config: Any) -> None:
    """Serve with the effective :class:`~forge_kernel.config.ForgeConfig` until SIGTERM/SIGINT;
    a :class:`~forge_kernel.errors.ForgeError` when it cannot start."""
    from forge_kernel.plugins import get_host

    host = get_host()
    if config.plugins:  # discovery already skipped the others; this checks the names exist
        host.restrict(config.plugins)
    check_servable(host)
    from forge_kernel.engine.async_engine import AsyncEngine  # torch: only once servable
    from forge_kernel.engine.builder import build_engine

    host.hook.forge_configure(config=config)
    engine = build_engine(config.engine)
    settings = engine.config  # what was chosen: the model's path, kv_cache, ...
    model_path = settings.model
    async_engine = AsyncEngine(engine)
    context = ServerContext(
        engine=async_engine, model_name=engine.model_name, config=config,
        registry=host.registry, host=host,
        aliases={str(model_path), Path(model_path).name, Path(model_path).stem},
        components={"backend": settings.backend, "kv_cache": settings.kv_cache,
                    "scheduler": settings.scheduler})
    refusals = host.call_each("forge_startup", context=context)
    if refusals:
        _shutdown_hooks(host, context)  # plugins whose start-up ran may hold resources
        plugin, exc = refusals[0]
        reason = str(exc) if isinstance(exc, StartupRefused) else f"{type(exc).__name__}: {exc}"
        raise StartupRefused(f"plugin {plugin!r} refused start-up: {reason}")
    if settings.lora and not engine.adapters:  # forge_startup loads them: never ignore --lora
        _shutdown_hooks(host, context)
        raise MissingPluginError("--lora needs a plugin that loads LoRA adapters (none did): "
                                 "pip install forge-plugin-train")
    import uvicorn  # present: check_servable made sure

    app = build_app(context)
    async_engine.start()
    endpoints = ", ".join(i.name for i in host.registry.implementations("endpoint"))
    _say(f"forge serving {engine.model_name} ({engine.model_config.architecture}, max_model_len "
         f"{engine.max_model_len}) | backend {settings.backend} | kv cache {settings.kv_cache} | "
         f"scheduler {settings.scheduler} | endpoints: {endpoints}")
    _say(f"listening on http://{config.host}:{config.port} (OpenAI API at /v1 when the openai "
         "endpoint is installed)")
    server = _graceful_server(async_engine, uvicorn.Config(
        app, host=config.host, port=config.port, log_level="warning", ws="websockets-sansio",
        timeout_graceful_shutdown=5))
    try:
        server.run()  # returns on SIGINT/SIGTERM after in-flight requests end or time out
    finally:
        asyncio.run(async_engine.shutdown())
        _shutdown_hooks(host, context)
        _say("forge: shut down")


def _shutdown_hooks(host: Any, context: ServerContext) -> None:
    for plugin, exc in host.call_each("forge_shutdown", context=context):
        _say(f"forge: plugin {plugin!r} failed during shutdown: {exc}")


def _graceful_server(engine: Any, config: Any) -> Any:
    """A uvicorn server that on SIGTERM/SIGINT aborts in-flight requests and returns (so
    shutdown hooks run, exit 0); a second SIGINT forces the exit."""
    import uvicorn

    class GracefulServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:  # noqa: ARG002 - signal API
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True
            engine.abort_all()

    return GracefulServer(config)
