"""The ``forge`` command line: lazy built-ins plus plugin commands (docs/architecture.md)."""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator

import click

from forge_kernel import __version__

BUILTIN_COMMANDS = {
    "serve": "forge_kernel.cli.serve:serve_command",
    "plugins": "forge_kernel.cli.plugins_cmd:plugins_command",
    "config": "forge_kernel.cli.config_cmd:config_command",
}
_STORE = "forge-plugin-store"
FEATURE_PLUGINS = {
    "run": ("forge-plugin-run", "Generate text with a model, or chat with it."),
    "pull": (_STORE, "Add a model to the local store (path, built-in name, Hugging Face)."),
    "list": (_STORE, "List stored models."),
    "show": (_STORE, "Show a model's architecture, tokenizer and chat template."),
    "rm": (_STORE, "Remove stored models."),
    "quantize": ("forge-plugin-ggml-quant", "Quantize a model's weights."),
    "train": ("forge-plugin-train", "Fine-tune a model (SFT, LoRA)."),
    "runs": ("forge-plugin-train", "List training runs."),
    "rag": ("forge-plugin-rag", "Index documents and answer from them."),
    "keys": ("forge-plugin-auth", "Manage API keys."),
    "eval": ("forge-plugin-eval", "Evaluate a model (perplexity)."),
}
"""Commands provided by plugins: the distribution to install when the command is missing."""


@contextlib.contextmanager
def reported(ctx: click.Context) -> Iterator[None]:
    """A :class:`~forge_kernel.errors.ForgeError` becomes one ``Error:`` line and exit 2."""
    from forge_kernel.errors import ForgeError

    try:
        yield
    except ForgeError as exc:
        click.echo(f"Error: {exc}", err=True)
        ctx.exit(2)


def _missing_plugin_command(name: str, dist: str, summary: str) -> click.Command:
    @click.command(name, help=f"{summary} (needs {dist}, not installed)",
                   context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    def command() -> None:
        click.echo(f"Error: `forge {name}` needs the plugin {dist}, which is not installed "
                   f"or is disabled.\n  pip install {dist}\n(see `forge plugins`)", err=True)
        sys.exit(2)

    return command


class ForgeGroup(click.Group):
    """Resolves built-in commands lazily and merges in plugin commands on first use."""

    _allow: str | None = None  # the allow-list to discover with (_requested_plugins)
    _cache: tuple[object, list[object], dict[str, click.Command]] | None = None
    """``(host, hook implementations, commands)``, recomputed when either changes (tests)."""

    def _plugins(self) -> dict[str, click.Command]:
        from forge_kernel.plugins import discovered, get_host, select_plugins

        if not discovered() and self._allow is not None:
            select_plugins(self._allow)  # before discovery: the others are never imported
        host = get_host()
        impls = host.hook.forge_register_commands.get_hookimpls()
        if self._cache is None or self._cache[0] is not host or self._cache[1] != impls:
            commands: dict[str, click.Command] = {}
            for impl in impls:
                # a scratch group per plugin: a failing one leaves no half of its commands
                collector = click.Group()
                try:
                    impl.function(cli=collector)
                except Exception as exc:  # noqa: BLE001 - reported, never fatal
                    click.echo(f"forge: plugin {impl.plugin_name!r} failed to add its commands: "
                               f"{type(exc).__name__}: {exc}", err=True)
                    continue
                commands.update(collector.commands)
            self._cache = (host, impls, commands)
        return self._cache[2]

    def invoke(self, ctx: click.Context) -> object:
        with reported(ctx):
            return super().invoke(ctx)

    def resolve_command(self, ctx: click.Context, args: list[str]):  # noqa: ANN201
        self._allow = _requested_plugins(args, "forge_plugins" in ctx.meta)
        with reported(ctx):
            return super().resolve_command(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        with reported(ctx):  # `forge --help` lists plugin commands: strict mode may fail
            plugin_commands = self._plugins()
        return sorted(set(BUILTIN_COMMANDS) | set(FEATURE_PLUGINS) | set(plugin_commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        plugin_command = self._plugins().get(name)
        if plugin_command is not None:
            return plugin_command
        if name in BUILTIN_COMMANDS:
            module, attr = BUILTIN_COMMANDS[name].split(":")
            return getattr(importlib.import_module(module), attr)
        if name in FEATURE_PLUGINS:
            return _missing_plugin_command(name, *FEATURE_PLUGINS[name])
        return None


def _requested_plugins(args: list[str], flag_given: bool) -> str | None:
    """``forge serve --plugins`` (needed before the command is resolved, since resolving
    discovers plugins), else the configuration's ``plugins`` unless ``forge --plugins`` was
    given."""
    if args and args[0] == "serve":
        for i, arg in enumerate(args[1:], 1):
            if arg == "--plugins" and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith("--plugins="):
                return arg.partition("=")[2]
    if flag_given:
        return None
    from forge_kernel.config import load_config
    from forge_kernel.errors import ConfigError

    try:
        return load_config(sections={}).plugins
    except ConfigError:  # reported by the command that reads the configuration
        return None


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from forge_kernel.plugins import get_host

    with reported(ctx):
        statuses = get_host().statuses
    click.echo(f"forge-kernel {__version__}")
    for status in statuses:
        suffix = "" if status.status == "loaded" else f" ({status.status})"
        click.echo(f"  {status.distribution} {status.version}{suffix}")
    ctx.exit()


def _select_plugins(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        from forge_kernel.plugins import select_plugins

        select_plugins(value)
        ctx.meta["forge_plugins"] = value


@click.group(cls=ForgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, callback=_print_version,
              help="Show the kernel's and plugins' versions.")  # not eager: after --plugins
@click.option("--plugins", expose_value=False, is_eager=True, callback=_select_plugins,
              help="Load only these plugins (comma-separated names); overrides FORGE_PLUGINS.")
@click.option("--log-format", type=click.Choice(["auto", "console", "json"]), default=None,
              help="Log format on stderr (default: log_format of the configuration, FORGE_"
                   "LOG_FORMAT; auto: console on a terminal, JSON otherwise).")
@click.pass_context
def main(ctx: click.Context, log_format: str | None) -> None:
    """forge: run, serve and extend LLMs. Every feature is a plugin (`forge plugins`)."""
    from forge_kernel.config import ForgeConfig, load_config
    from forge_kernel.errors import ConfigError
    from forge_kernel.log import configure_logging

    try:
        config = load_config({"log_format": log_format}, sections={})
    except ConfigError:  # the command that reads the configuration reports it
        config = ForgeConfig(log_format=log_format or "auto")
    configure_logging(config.log_format, config.log_level)
