"""Which model a request's ``model`` names: the served base model or one of its LoRA adapters
(``forge serve --lora NAME=PATH``), as vLLM's multi-LoRA server names them."""

from __future__ import annotations

from typing import Any

from forge_plugin_protocol.errors import model_not_found


def adapters(server: Any) -> tuple[str, ...]:
    """The adapters the engine loaded at start-up (``AsyncEngine.adapters``; empty: none)."""
    return tuple(server.engine.adapters)


def resolve_model(server: Any, model: str | None) -> str | None:
    """The adapter ``model`` picks: ``None`` for the base model (no ``model``, its name or an
    alias), the adapter's name for ``<base>:<adapter>`` or the bare adapter name. Anything
    else is a 404 ``model_not_found`` naming ``model`` (``server``: the
    :class:`~forge_kernel.server.ServerContext`)."""
    if server.serves(model):
        return None
    loaded = adapters(server)
    base, sep, name = model.rpartition(":")
    if sep and name in loaded and server.serves(base):
        return name
    if model in loaded:
        return model
    raise model_not_found(model)


def model_ids(server: Any) -> list[tuple[str, str | None]]:
    """``(id, parent)`` of every model ``/v1/models`` lists: the base model (no parent), then
    ``<base>:<adapter>`` per adapter with the base as parent."""
    base = server.model_name
    return [(base, None)] + [(f"{base}:{name}", base) for name in adapters(server)]
