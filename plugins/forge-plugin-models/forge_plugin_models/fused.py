"""Fused projections: one backend op for matrices that read the same input (q/k/v, gate/up).

A backend may offer ``fused_linear(weights, biases)`` returning one op whose output is the
concatenation of the projections, with ``parts(sizes)`` giving per-projection ops that share its
memory. One call instead of three (or two) saves the per-call overhead and the activation
preparation (e.g. int8 quantization) that every call repeats; decode runs ~70 instead of ~126
backend calls per token on Gemma 3. Backends without it, or declining (``None``, e.g. exact
float32 weights), get one op per projection.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class FusedProjection:
    """The fused op and the per-projection ops it was split into."""

    __slots__ = ("op", "parts", "sizes")

    def __init__(self, op: Callable, parts: list[Callable], sizes: list[int]) -> None:
        self.op, self.parts, self.sizes = op, parts, sizes

    def intact(self, *ops: Callable) -> bool:
        """True while the per-projection ops are the ones built here: a plugin that replaced
        one (a LoRA wrapper) must see its wrapper called, so the fused op is then bypassed."""
        return all(a is b for a, b in zip(ops, self.parts, strict=True))

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # x: [T, in] -> one [T, size] view per projection (split_with_sizes: the C method,
        # not Tensor.split's Python wrapper, ~1 us less on each of 36 calls per decode token)
        return self.op(x).split_with_sizes(self.sizes, dim=-1)


def build(backend, weights: list, biases: list) -> tuple[FusedProjection | None, list]:
    """``(fused, ops)``: a :class:`FusedProjection` and its parts when the backend fuses these
    weights, else ``(None, None)`` (the caller builds one op per weight)."""
    make = getattr(backend, "fused_linear", None)
    op = make(weights, biases) if make is not None else None
    if op is None:
        return None, None
    sizes = [int(w.shape[0]) for w in weights]
    parts = op.parts(sizes)
    return FusedProjection(op, parts, sizes), parts
