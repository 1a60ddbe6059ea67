"""``forge serve``: flags -> :func:`forge_kernel.config.load_config` ->
:func:`forge_kernel.server.serve` (the lifecycle lives there)."""

from __future__ import annotations

import sys

import click

ENGINE_FLAGS = [
    click.option("--backend", default=None, help="Compute backend (default: cpu)."),
    click.option("--device", type=click.IntRange(min=0), default=None,
                 help="Device index of a GPU backend (--backend cuda --device 1: cuda:1)."),
    click.option("--kv-cache", default=None,
                 help="KV cache: paged or naive (default: the backend's choice, else paged)."),
    click.option("--threads", type=click.IntRange(min=1), default=None,
                 help="Compute threads (default: cores)."),
    click.option("--speculative", default=None, help="Speculative decoding: ngram or "
                 "draft:MODEL (forge-plugin-speculative; off)."),
    click.option("--num-speculative-tokens", type=click.IntRange(min=1), default=None,
                 help="Most draft tokens per sequence and step (5)."),
]
"""The engine flags ``forge serve`` and ``forge run`` share (named like the config keys)."""


def engine_flags(command):  # noqa: ANN001, ANN201 - a click decorator
    """Add :data:`ENGINE_FLAGS` to ``command``."""
    for flag in reversed(ENGINE_FLAGS):
        command = flag(command)
    return command


@click.command("serve")
@click.option("--host", default=None, help="Interface to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8000).")
@click.option("--model", default=None, help="Model name, path or Hub reference "
              "(default: the embedded gemma3-270m).")
@engine_flags
@click.option("--scheduler", default=None, help="Scheduler (default: continuous).")
@click.option("--max-batch-size", type=int, default=None, help="Sequences per step (64).")
@click.option("--max-prefill-tokens", type=int, default=None,
              help="Prompt tokens per step; longer prompts are chunked (512).")
@click.option("--block-size", type=int, default=None, help="KV block size in tokens (16).")
@click.option("--num-blocks", type=int, default=None,
              help="KV blocks (default: room for max(4096, --max-model-len) tokens, at most "
                   "512 MiB).")
@click.option("--max-model-len", type=int, default=None, help="Context limit per request.")
@click.option("--api-key", default=None, help="Require this key (or set FORGE_API_KEY).")
@click.option("--plugins", "plugins", default=None,
              help="Load only these plugins (comma-separated); the others are never imported.")
@click.option("--lora", multiple=True, metavar="NAME=PATH",
              help="Serve a LoRA adapter (repeatable): a forge train run's adapter dir or a "
                   "PEFT adapter dir; requests pick it with model \"<base>:NAME\".")
def serve_command(**flags) -> None:
    """Serve the model through every endpoint plugin (forge-plugin-openai: the OpenAI API)."""
    from forge_kernel.config import load_config
    from forge_kernel.errors import ForgeError, MissingPluginError
    from forge_kernel.server import serve

    # Repeated --lora flags become the config's one "name=PATH,name=PATH" string.
    flags["lora"] = ",".join(flags["lora"]) or None
    try:
        serve(load_config(flags))
    except MissingPluginError:
        raise  # the group reports it: exit status 2, like other missing-plugin commands
    except ForgeError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
