"""Exact path: weights dequantized once to float32, products by ``F.linear`` (MKL/oneDNN)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class Fp32Linear:
    """``y = x @ W.T + b`` with a float32 ``W [out, in]``."""

    __slots__ = ("weight", "bias", "in_features", "out_features")

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.weight = weight  # [out, in] float32
        self.bias = bias  # [out] float32 or None
        self.out_features, self.in_features = weight.shape

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # x: [T, in] -> [T, out]
        return F.linear(x.to(torch.float32), self.weight, self.bias)


class Fp32Embedding:
    """Row lookup in a float32 table ``[num_embeddings, dim]``."""

    __slots__ = ("table", "num_embeddings", "dim")

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table  # [V, D] float32
        self.num_embeddings, self.dim = table.shape

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        # ids: [T] int -> [T, D]
        return F.embedding(ids.to(torch.long), self.table)
