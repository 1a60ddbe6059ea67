"""Hook specifications of forge-kernel (reference: docs/plugins/hooks.md). No hook is called per
token: the engine resolves implementations once and holds the objects."""

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
    """Compute backends (:class:`~forge_kernel.interfaces.backend.Backend`);
    ``factory(threads=None[, device=N])``, chosen with ``--backend`` (default ``cpu``)."""


@hookspec
def forge_register_schedulers(register: Register) -> None:
    """Schedulers (:class:`~forge_kernel.interfaces.scheduler.Scheduler`);
    ``factory(config, kv_cache)``, chosen with ``--scheduler`` (default ``continuous``)."""


@hookspec
def forge_register_kv_caches(register: Register) -> None:
    """KV caches (:class:`~forge_kernel.interfaces.kv_cache.KVCache`);
    ``factory(spec, config)``, chosen with ``--kv-cache`` (default ``paged``)."""


@hookspec
def forge_register_quantizers(register: Register) -> None:
    """Weight quantizers (:class:`~forge_kernel.interfaces.quantizer.Quantizer`);
    ``factory()``, used by ``forge quantize``."""


@hookspec
def forge_register_trainers(register: Register) -> None:
    """Trainers (:class:`~forge_kernel.interfaces.trainer.Trainer`); ``factory()``, used by
    ``forge train --method NAME``."""


@hookspec
def forge_register_tools(register: Register) -> None:
    """Tools models can call (:class:`~forge_kernel.interfaces.tool.Tool`); ``factory()``; the
    name is the one a model calls it by."""


@hookspec
def forge_register_endpoints(register: Register) -> None:
    """Endpoints and middlewares (:mod:`forge_kernel.interfaces.endpoint`); ``factory()``.
    ``forge serve`` mounts every endpoint and wraps the whole app in every middleware."""


@hookspec
def forge_register_model_architectures(register: Register) -> None:
    """Architectures (:class:`~forge_kernel.interfaces.architecture.ModelArchitecture`);
    ``factory()``, named by the model file's architecture string (register each alias)."""


@hookspec
def forge_register_weight_loaders(register: Register) -> None:
    """Weight loaders (:class:`~forge_kernel.interfaces.loader.WeightLoader`); ``factory()``.
    The first whose ``can_load(path)`` accepts is used, unless ``--loader NAME`` is given."""


@hookspec
def forge_register_constraint_compilers(register: Register) -> None:
    """Structured output (:class:`~forge_kernel.interfaces.constraint.ConstraintCompiler`);
    ``factory(tokenizer, vocab_size)``, built once per model on the first constrained request."""


@hookspec
def forge_register_speculators(register: Register) -> None:
    """Speculative decoding (:class:`~forge_kernel.interfaces.speculator.Speculator`);
    ``factory(config, *, model, tokenizer, backend, kv_cache)``, named as ``--speculative``."""


@hookspec
def forge_register_commands(cli: click.Group) -> None:
    """Add subcommands to ``forge`` (``@cli.command()``); import torch inside the command body
    so ``forge --help`` stays fast."""


@hookspec(firstresult=True)
def forge_resolve_model(name: str) -> Path | None:
    """The path of a model name that is no existing path (first non-``None`` answer wins);
    ``None`` for a name you do not know, a ``ForgeError`` for one you cannot provide."""


@hookspec
def forge_register_config_sections(register: Register) -> None:
    """``register(section, dataclass)``: the file's ``[section]`` and
    ``FORGE_<SECTION>_<FIELD>`` are validated against the dataclass's field types."""


@hookspec
def forge_configure(config: ForgeConfig) -> None:
    """Called once the effective configuration is known, before anything is built; read your
    section with ``config.section(name)``, do not mutate ``config``."""


@hookspec
def forge_startup(context: Any) -> None:
    """Called with the :class:`~forge_kernel.server.ServerContext` before the server accepts
    work; raise ``StartupRefused`` to refuse (every ``forge_shutdown`` then runs, exit non-zero)."""


@hookspec
def forge_shutdown(context: Any) -> None:
    """Called once on shutdown after work has drained (also after a refused start-up);
    exceptions are logged with the plugin's name and do not stop the others."""
