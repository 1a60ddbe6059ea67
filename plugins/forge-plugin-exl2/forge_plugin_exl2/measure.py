"""Measurement pass: run the model on calibration text and collect each linear layer's input
Hessian ``H = X^T X / tokens``.

The model is forge's own engine model (forge-plugin-models' decoder on the CPU backend in
``exact`` float32 mode), not transformers: it is the model the EXL2 directory will be served
with, it reads every source forge loads (GGUF of any type, safetensors) through the canonical
tensor names, and it needs no second copy of the weights in another library's layout. Each
layer's projections are wrapped by a recorder; q/k/v (and gate/up) see the same input tensor,
so they share one accumulator and the product is computed once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from forge_kernel.interfaces.loader import ModelSource

MIN_TOKENS = 128
"""Fewer calibration tokens than this cannot give a usable Hessian."""


class _Accumulator:
    __slots__ = ("h", "tokens", "_last")

    def __init__(self) -> None:
        self.h: torch.Tensor | None = None
        self.tokens = 0
        self._last: torch.Tensor | None = None

    def add(self, x: torch.Tensor) -> None:
        if x is self._last:  # the sibling projection already counted this input
            return
        self._last = x
        x = x.reshape(-1, x.shape[-1]).to(torch.float32)
        if self.h is None:
            self.h = torch.zeros((x.shape[1], x.shape[1]), dtype=torch.float64)
        self.h += (x.T @ x).to(torch.float64)
        self.tokens += x.shape[0]

    def hessian(self) -> torch.Tensor:
        return (self.h / max(self.tokens, 1)).to(torch.float32)


class _Recorded:
    """A linear op that feeds its input to an accumulator first."""

    __slots__ = ("op", "acc")

    def __init__(self, op: Callable, acc: _Accumulator) -> None:
        self.op, self.acc = op, acc

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.acc.add(x)
        return self.op(x)


def calibration_windows(tokenizer, text: str, ctx: int, max_windows: int) -> list[list[int]]:
    """Non-overlapping windows of ``ctx`` tokens, each starting with BOS (as llama.cpp's
    perplexity does), at most ``max_windows``; the last partial window is kept if it has at
    least ``MIN_TOKENS`` tokens."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    bos = [tokenizer.bos_id] if getattr(tokenizer, "bos_id", None) is not None else []
    step = ctx - len(bos)
    windows = []
    for start in range(0, len(ids), step):
        piece = ids[start:start + step]
        if len(piece) < MIN_TOKENS and windows:
            break
        windows.append(bos + piece)
        if len(windows) == max_windows:
            break
    if sum(len(w) for w in windows) < MIN_TOKENS:
        raise ValueError(f"calibration text too short: {len(ids)} tokens, at least "
                         f"{MIN_TOKENS} are needed")
    return windows


def collect_hessians(source: ModelSource, windows: list[list[int]],
                     progress: Callable[[int, int], None] | None = None,
                     threads: int | None = None) -> dict[str, torch.Tensor]:
    """``{canonical weight name: H [in, in]}`` for every projection of every layer."""
    from forge_kernel.interfaces.batch import ForwardBatch, SequenceChunk
    from forge_kernel.interfaces.kv_cache import KVCacheConfig
    from forge_kernel.modeling import build_causal_lm
    from forge_kernel.plugins import get_host

    registry = get_host().registry
    backend = registry.create("backend", "cpu", threads=threads, precision="exact")
    model = build_causal_lm(source, backend)
    if not hasattr(model, "layers") or not hasattr(model, "hidden_states"):
        raise ValueError(f"architecture {source.config.architecture!r}: its model does not "
                         f"expose decoder layers to calibrate")
    sites: dict[str, _Accumulator] = {}
    for i, layer in enumerate(model.layers):
        attn_in, o_in, mlp_in, down_in = (_Accumulator() for _ in range(4))
        for attr, kind, acc in (("q", "attn_q", attn_in), ("k", "attn_k", attn_in),
                                ("v", "attn_v", attn_in), ("o", "attn_output", o_in)):
            setattr(layer, attr, _Recorded(getattr(layer, attr), acc))
            sites[f"blk.{i}.{kind}.weight"] = acc
        mlp = layer.mlp
        for attr, kind, acc in (("gate", "ffn_gate", mlp_in), ("up", "ffn_up", mlp_in),
                                ("down", "ffn_down", down_in)):
            setattr(mlp, attr, _Recorded(getattr(mlp, attr), acc))
            sites[f"blk.{i}.{kind}.weight"] = acc
    spec = model.kv_cache_spec()
    longest = max(len(w) for w in windows)
    for n, ids in enumerate(windows):
        cache = registry.create("kv_cache", "naive", spec,
                                KVCacheConfig(memory_budget_bytes=longest * spec.bytes_per_token))
        cache.allocate(0, len(ids))
        batch = ForwardBatch(torch.tensor(ids, dtype=torch.long),
                             torch.arange(len(ids), dtype=torch.long),
                             [SequenceChunk(0, 0, len(ids), needs_logits=False)])
        cache.begin_step(batch)
        model.hidden_states(batch, cache)  # the LM head is not needed
        cache.free(0)
        if progress:
            progress(n + 1, len(windows))
    shared = {id(acc): acc.hessian() for acc in sites.values()}  # one tensor per input site
    return {name: shared[id(acc)] for name, acc in sites.items()}
