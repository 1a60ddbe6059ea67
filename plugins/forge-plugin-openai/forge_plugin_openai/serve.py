"""``forge serve``: load the model, assemble the app from every plugin, run uvicorn."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import click

from forge_kernel.errors import ForgeError, StartupRefused


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


@click.command("serve")
@click.option("--host", default=None, help="Interface to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8000).")
@click.option("--model", default=None, help="Model name, path or Hub reference "
              "(default: the embedded gemma3-270m).")
@click.option("--backend", default=None, help="Compute backend (default: cpu).")
@click.option("--kv-cache", default=None, help="KV cache: paged (default) or naive.")
@click.option("--scheduler", default=None, help="Scheduler (default: continuous).")
@click.option("--max-batch-size", type=int, default=None, help="Sequences per step (64).")
@click.option("--max-prefill-tokens", type=int, default=None,
              help="Prompt tokens per step; longer prompts are chunked (512).")
@click.option("--block-size", type=int, default=None, help="KV block size in tokens (16).")
@click.option("--num-blocks", type=int, default=None,
              help="KV blocks (default: room for max(4096, --max-model-len) tokens, at most "
                   "512 MiB).")
@click.option("--threads", type=int, default=None, help="Compute threads (default: cores).")
@click.option("--max-model-len", type=int, default=None, help="Context limit per request.")
@click.option("--api-key", default=None, help="Require this key (or set FORGE_API_KEY).")
@click.option("--plugins", "plugins", default=None,
              help="Load only these plugins (comma-separated); others are disabled.")
def serve_command(**flags) -> None:
    """Serve the model over the OpenAI-compatible API (and every endpoint plugin)."""
    import uvicorn

    from forge_kernel.config import load_config
    from forge_kernel.engine.async_engine import AsyncEngine
    from forge_kernel.engine.builder import build_engine
    from forge_kernel.engine.config import EngineConfig
    from forge_kernel.plugins import get_host
    from forge_kernel.server import ServerContext, build_app
    from forge_kernel.engine.config import display_name, resolve_model_path as resolve_model

    try:
        config = load_config(flags)
        host = get_host()
        if config.plugins:
            host.restrict(config.plugins)
        host.hook.forge_configure(config=config)
        model_path = resolve_model(config.model)
        engine = build_engine(EngineConfig(
            model=str(model_path), backend=config.backend, kv_cache=config.kv_cache,
            scheduler=config.scheduler, max_batch_size=config.max_batch_size,
            max_prefill_tokens=config.max_prefill_tokens, block_size=config.block_size,
            num_blocks=config.num_blocks, threads=config.threads,
            max_model_len=config.max_model_len, model_name=display_name(config.model)))
    except ForgeError as exc:
        _fail(str(exc))
    async_engine = AsyncEngine(engine)
    context = ServerContext(
        engine=async_engine, model_name=engine.model_name, config=config,
        registry=host.registry, host=host, aliases={str(model_path), Path(model_path).name,
                                         Path(model_path).stem},
        components={"backend": config.backend, "kv_cache": config.kv_cache,
                    "scheduler": config.scheduler})
    refusals = host.call_each("forge_startup", context=context)
    if refusals:
        # Plugins whose start-up ran may hold resources: they get their shutdown hook too.
        _shutdown_hooks(host, context)
        plugin, exc = refusals[0]
        reason = str(exc) if isinstance(exc, StartupRefused) else f"{type(exc).__name__}: {exc}"
        _fail(f"plugin {plugin!r} refused start-up: {reason}")
    app = build_app(context)
    async_engine.start()
    endpoints = ", ".join(i.name for i in host.registry.implementations("endpoint"))
    click.echo(f"forge serving {engine.model_name} ({engine.model_config.architecture}, "
               f"max_model_len {engine.max_model_len}) | backend {config.backend} | kv cache "
               f"{config.kv_cache} | scheduler {config.scheduler} | endpoints: {endpoints}",
               err=True)
    click.echo(f"OpenAI API at http://{config.host}:{config.port}/v1", err=True)
    server = _graceful_server(async_engine, uvicorn.Config(
        app, host=config.host, port=config.port, log_level="warning", ws="websockets-sansio",
        timeout_graceful_shutdown=5))
    try:
        server.run()  # returns on SIGINT/SIGTERM after in-flight requests end or time out
    finally:
        asyncio.run(async_engine.shutdown())
        _shutdown_hooks(host, context)
        click.echo("forge: shut down", err=True)


def _shutdown_hooks(host, context) -> None:
    for plugin, exc in host.call_each("forge_shutdown", context=context):
        click.echo(f"forge: plugin {plugin!r} failed during shutdown: {exc}", err=True)


def _graceful_server(engine, config):
    """A uvicorn server that, on SIGTERM/SIGINT, aborts every in-flight request (streams end
    with ``finish_reason="abort"`` then ``[DONE]``; their KV is freed) and returns normally
    instead of re-raising the signal, so shutdown hooks run and the process exits 0. A second
    SIGINT forces the exit."""
    import uvicorn

    class GracefulServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame) -> None:  # noqa: ARG002 - signal API
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True
            engine.abort_all()

    return GracefulServer(config)
