"""Projection and embedding ops over device-resident bf16/fp16 weights (cuBLAS via torch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class DeviceLinear:
    """``y = x @ W.T + b`` with ``W [out, in]`` in the compute dtype on the backend's device.

    Inputs on another device or dtype are moved first (the model's activations already live
    on the device, so in the hot path both conversions are no-ops)."""

    __slots__ = ("weight", "bias", "in_features", "out_features")

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.weight = weight  # [out, in]
        self.bias = bias  # [out] compute dtype, or None
        self.out_features, self.in_features = weight.shape

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # x: [T, in] -> [T, out]
        w = self.weight
        return F.linear(x.to(device=w.device, dtype=w.dtype), w, self.bias)


class DeviceEmbedding:
    """Row lookup ``ids [T] -> [T, dim]`` in a device table of the compute dtype."""

    __slots__ = ("table", "num_embeddings", "dim")

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table  # [V, D]
        self.num_embeddings, self.dim = table.shape

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids.to(device=self.table.device, dtype=torch.long), self.table)
