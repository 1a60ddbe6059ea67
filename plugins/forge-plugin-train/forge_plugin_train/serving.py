"""LoRA adapters at serve time, several at once, chosen per request (vLLM's multi-LoRA).

:func:`attach_adapters` runs once at start-up (``forge_startup`` for ``forge serve --lora``):
it loads every adapter, wraps each adapted projection of the model in a :class:`LoraLinear`
and tells the engine the names. Base weights stay as they are (quantized or not); every
wrapped projection computes

    y = base(x);  y[rows of adapter a] += (x[rows] @ A_a.T) @ (B_a.T * scale_a)

so one step may mix base rows (no delta) and rows of several adapters. Which rows belong to
which adapter is worked out once per step (:meth:`StepAdapters.begin_step`, called by the
model from the chunks' ``adapter``), never per projection or through a hook. A model without
adapters keeps its plain projections: nothing here runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from forge_kernel.errors import ConfigError
from forge_kernel.interfaces.batch import ForwardBatch
from forge_plugin_train.adapters import Adapter, load_adapter, parse_specs

Rows = slice | torch.Tensor
"""The rows of one adapter in the step: a slice when they are contiguous, else an index."""


class StepAdapters:
    """The step's ``(adapter index, rows)`` groups; set once per step, read by every
    :class:`LoraLinear` of the model."""

    __slots__ = ("index", "groups", "device")

    def __init__(self, names: list[str], device: torch.device | str = "cpu") -> None:
        self.index = {name: i for i, name in enumerate(names)}
        self.groups: list[tuple[int, Rows]] = []
        self.device = device

    def begin_step(self, batch: ForwardBatch) -> None:
        spans: dict[int, list[tuple[int, int]]] = {}
        for chunk, begin, end in batch.iter_spans():
            if chunk.adapter is not None:
                spans.setdefault(self.index[chunk.adapter], []).append((begin, end))
        self.groups = [(a, _rows(s, self.device)) for a, s in spans.items()]


def _rows(spans: list[tuple[int, int]], device: torch.device | str) -> Rows:
    merged = [list(spans[0])]
    for begin, end in spans[1:]:
        if begin == merged[-1][1]:
            merged[-1][1] = end
        else:
            merged.append([begin, end])
    if len(merged) == 1:
        return slice(*merged[0])
    return torch.cat([torch.arange(b, e) for b, e in merged]).to(device)


class LoraLinear:
    """A base projection plus per-adapter low-rank deltas for the rows that asked for them."""

    __slots__ = ("base", "step", "weights", "in_features", "out_features")

    def __init__(self, base: Any, step: StepAdapters,
                 weights: list[tuple[torch.Tensor, torch.Tensor] | None]) -> None:
        self.base, self.step, self.weights = base, step, weights
        """``weights[a]``: adapter ``a``'s ``(A.T [in, r], B.T * scale [r, out])``, or None
        where that adapter leaves this projection alone."""
        self.in_features = base.in_features
        self.out_features = base.out_features

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)  # [T, out], a fresh tensor: the deltas are added in place
        for adapter, rows in self.step.groups:
            pair = self.weights[adapter]
            if pair is not None:
                y[rows] += (x[rows] @ pair[0]) @ pair[1]
        return y


def _check(adapter: Adapter, module: str, base: Any) -> None:
    lora = adapter.modules[module]
    want = (base.in_features, base.out_features)
    got = (lora.a.shape[1], lora.b.shape[0])
    if want != got:
        raise ConfigError(f"LoRA adapter {adapter.name!r} ({adapter.path}): {module} maps "
                          f"{got[0]} -> {got[1]} features but the served model's maps "
                          f"{want[0]} -> {want[1]}: it was trained on another base model")


def attach_adapters(engine: Any, adapters: Mapping[str, str | Path]) -> tuple[str, ...]:
    """Load ``adapters`` (``{name: PATH}``, PATH as :func:`~forge_plugin_train.adapters.
    adapter_dir` takes it) onto ``engine``'s model (an :class:`~forge_kernel.engine.engine.
    LLMEngine` not yet serving) and return their names. Raises :class:`ConfigError` for an
    unreadable adapter, one trained on another base model, or a model without
    ``projections()`` (forge-plugin-models' decoders have them)."""
    model = engine.model
    if not hasattr(model, "projections"):
        raise ConfigError(f"the served model ({type(model).__name__}) cannot apply LoRA "
                          f"adapters (it has no projections())")
    if engine.adapters:
        raise ConfigError(f"adapters are already attached: {', '.join(engine.adapters)}")
    names = list(adapters)
    loaded = [load_adapter(name, path, model.dtype) for name, path in adapters.items()]
    slots = model.projections()
    for adapter in loaded:  # every check before the model is touched
        unknown = sorted(set(adapter.modules) - set(slots))
        if unknown:
            raise ConfigError(f"LoRA adapter {adapter.name!r} ({adapter.path}) adapts "
                              f"{unknown[0]}, which the served model does not have")
        for module in adapter.modules:
            holder, attr = slots[module]
            _check(adapter, module, getattr(holder, attr))
    device = getattr(getattr(model, "backend", None), "device", "cpu")
    step = StepAdapters(names, device)
    for module, (holder, attr) in slots.items():
        if not any(module in a.modules for a in loaded):
            continue  # no adapter touches it: it stays the plain projection
        weights = []
        for adapter in loaded:
            lora = adapter.modules.get(module)
            weights.append(None if lora is None else
                           (lora.a.t().contiguous().to(device),
                            (lora.b.t() * lora.scale).contiguous().to(device)))
        setattr(holder, attr, LoraLinear(getattr(holder, attr), step, weights))
    model.lora = step
    engine.adapters = tuple(names)
    return engine.adapters


def attach_from_config(engine: Any, lora: str | None) -> tuple[str, ...]:
    """:func:`attach_adapters` for the ``lora`` setting (``"name=PATH,..."``); no-op when
    unset."""
    specs = parse_specs(lora)
    return attach_adapters(engine, specs) if specs else ()
