"""Hook specifications of forge-kernel.

Every hook is prefixed ``forge_``. There are two families:

* **Registration hooks** (``forge_register_*``) receive a ``register`` callback. A plugin calls
  ``register(name, factory)`` once per implementation it offers. Names are chosen by users with
  explicit flags (``--backend cpu``), so two plugins registering the same name for the same kind is
  an error that names both plugins. Registration hooks run once per process, at discovery, and must
  be cheap: register classes or factories, never build models or import torch eagerly if avoidable.
* **Lifecycle hooks** (``forge_configure``, ``forge_startup``, ``forge_shutdown``) run around a
  server or command. ``forge_startup`` may refuse start by raising
  :class:`forge_kernel.errors.StartupRefused`.

No hook is ever called per token: the engine resolves implementations by name once and then holds
the chosen objects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from forge_kernel.markers import hookspec

if TYPE_CHECKING:
    from pathlib import Path

    import click

    from forge_kernel.config import ForgeConfig

Register = Callable[[str, Callable[..., Any]], None]
"""``register(name, factory)``: offer one named implementation of a kind."""


@hookspec
def forge_register_backends(register: Register) -> None:
    """Register compute backends (:class:`forge_kernel.interfaces.backend.Backend`).

    ``factory(threads: int | None = None)`` returns a backend. Selected with ``--backend NAME``;
    the default is ``cpu``.
    """


@hookspec
def forge_register_schedulers(register: Register) -> None:
    """Register request schedulers (:class:`forge_kernel.interfaces.scheduler.Scheduler`).

    ``factory(config: SchedulerConfig, kv_cache: KVCache)`` returns a scheduler. Selected with
    ``--scheduler NAME``; the default is ``continuous``.
    """


@hookspec
def forge_register_kv_caches(register: Register) -> None:
    """Register KV-cache managers (:class:`forge_kernel.interfaces.kv_cache.KVCache`).

    ``factory(spec: KVCacheSpec, config: KVCacheConfig)`` returns a cache. Selected with
    ``--kv-cache NAME``; the default is ``paged`` (forge-plugin-kv-paged), ``naive``
    (forge-plugin-kv-naive) is the contiguous reference.
    """


@hookspec
def forge_register_quantizers(register: Register) -> None:
    """Register weight quantizers (:class:`forge_kernel.interfaces.quantizer.Quantizer`).

    ``factory()`` returns a quantizer; used by ``forge quantize --method NAME``.
    """


@hookspec
def forge_register_trainers(register: Register) -> None:
    """Register trainers (:class:`forge_kernel.interfaces.trainer.Trainer`).

    ``factory()`` returns a trainer; used by ``forge train --method NAME`` (``sft``, ``lora``, ...).
    """


@hookspec
def forge_register_tools(register: Register) -> None:
    """Register tools callable by models (:class:`forge_kernel.interfaces.tool.Tool`).

    ``factory()`` returns a tool; the name is the one a model calls it by.
    """


@hookspec
def forge_register_endpoints(register: Register) -> None:
    """Register HTTP/WebSocket endpoints (:class:`forge_kernel.interfaces.endpoint.Endpoint`)
    and middlewares (:class:`forge_kernel.interfaces.endpoint.Middleware`).

    ``factory()`` returns an endpoint or a middleware. ``forge serve`` mounts every registered
    endpoint and wraps the whole application in every middleware, so a middleware (auth, metrics)
    also covers endpoints added by other plugins.
    """


@hookspec
def forge_register_model_architectures(register: Register) -> None:
    """Register model architectures (:class:`forge_kernel.interfaces.model.ModelArchitecture`).

    ``factory()`` returns an architecture. ``name`` is the architecture string found in model
    files (GGUF ``general.architecture``, or a Hugging Face ``model_type``); register each alias.
    """


@hookspec
def forge_register_weight_loaders(register: Register) -> None:
    """Register weight loaders for model file formats
    (:class:`forge_kernel.interfaces.model.WeightLoader`).

    ``factory()`` returns a loader. The kernel asks each loader ``can_load(path)`` and uses the
    first that accepts, unless ``--loader NAME`` is given.
    """


@hookspec
def forge_register_constraint_compilers(register: Register) -> None:
    """Register structured-output compilers
    (:class:`forge_kernel.interfaces.constraint.ConstraintCompiler`).

    ``factory(tokenizer, vocab_size)`` returns a compiler, built once per model the first time a
    request carries a constraint (``response_format``, ``guided_*``, forced tool calls). The
    engine then holds the compiled matchers: nothing is dispatched per token.
    """


@hookspec
def forge_register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``forge`` command-line group.

    Called once when the CLI starts. Add commands with ``@cli.command()``; keep imports of heavy
    modules (torch) inside the command body so ``forge --help`` stays fast.
    """


@hookspec(firstresult=True)
def forge_resolve_model(name: str) -> Path | None:
    """Turn a model name that is not an existing path into the path of its files.

    Called by the kernel for ``--model NAME`` / ``forge run NAME`` (and for the default model,
    ``gemma3-270m``, when no model is given); the first non-``None`` answer wins. Return
    ``None`` for a name you do not know; raise a :class:`forge_kernel.errors.ForgeError` for a
    name you know but cannot provide (e.g. its files are missing). forge-plugin-store answers
    with stored, pulled and built-in models.
    """


@hookspec
def forge_register_config_sections(register: Register) -> None:
    """Declare a per-plugin configuration section.

    ``register(section, dataclass_type)``: values under ``[section]`` in the config file and
    ``FORGE_<SECTION>_<FIELD>`` environment variables are validated against the dataclass fields'
    types; a bad value is an error naming the key and the expected type.
    """


@hookspec
def forge_configure(config: ForgeConfig) -> None:
    """Called once the effective configuration is known, before anything is built.

    Plugins read their section with ``config.section(name)``. Do not mutate ``config``.
    """


@hookspec
def forge_startup(context: Any) -> None:
    """Called when a server or engine has been built, before it accepts work.

    ``context`` is the :class:`forge_kernel.server.ServerContext` of ``forge serve`` (one-shot
    ``forge run`` calls no lifecycle hooks). Raise :class:`forge_kernel.errors.StartupRefused`
    with a reason to refuse start; the kernel then calls every ``forge_shutdown`` (so plugins
    that did start can release what they took), reports the plugin and the reason and exits
    non-zero.
    """


@hookspec
def forge_shutdown(context: Any) -> None:
    """Called once on shutdown (SIGTERM/SIGINT or normal exit) after work has drained, and
    also when a plugin refused start-up (so it may run without a matching ``forge_startup``).

    Exceptions raised here are logged with the plugin's name and do not stop other plugins'
    shutdown hooks.
    """
