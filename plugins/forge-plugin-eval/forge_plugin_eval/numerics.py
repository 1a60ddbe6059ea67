"""llama.cpp's CPU activation rounding, so perplexities of quantized files compare with
``llama-perplexity``'s.

ggml's CPU backend never multiplies a quantized matrix by float32 activations: each activation
row is first quantized to the matrix type's "vec_dot" type and the dot product runs on integers.
That rounding costs quantized models about 1% of perplexity on Gemma 3 270M (an F32 file scores
the same in both tools to 4 digits; its Q4_K_M differs by ~0.9% without this emulation). We
reproduce the rounding on the activations before our float32 matmul with the dequantized weights,
which gives the same products up to summation order:

* k-quants (Q4_K, Q5_K, Q6_K, ...) -> ``Q8_K``: blocks of 256, ``scale = max / -127`` where
  ``max`` is the signed value of largest magnitude, levels rounded half to even and capped at 127;
* legacy types (Q4_0, Q5_0, Q5_1, Q8_0, ...) -> ``Q8_0``/``Q8_1``: blocks of 32,
  ``d = fp16(amax / 127)``, levels ``roundf(x / d)`` (half away from zero);
* F16 / BF16 matrices: activations rounded to that float type; F32: unchanged.
"""

from __future__ import annotations

from typing import Any

import torch

K_QUANTS = {"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ2_S",
            "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M", "IQ4_XS", "TQ1_0", "TQ2_0"}
LEGACY = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "IQ4_NL", "MXFP4"}
MODES = ("ggml", "fp32")


def _q8_k(x: torch.Tensor) -> torch.Tensor:
    blocks = x.reshape(*x.shape[:-1], -1, 256)
    idx = blocks.abs().argmax(dim=-1, keepdim=True)
    top = blocks.gather(-1, idx)  # signed value of largest magnitude
    iscale = torch.where(top != 0, -127.0 / top, torch.zeros_like(top))
    q = torch.round(blocks * iscale).clamp(max=127.0)
    d = torch.where(top != 0, 1.0 / iscale, torch.zeros_like(top))
    return (q * d).reshape(x.shape)


def _q8_0(x: torch.Tensor) -> torch.Tensor:
    blocks = x.reshape(*x.shape[:-1], -1, 32)
    amax = blocks.abs().amax(dim=-1, keepdim=True)
    d = amax / 127.0
    inv = torch.where(d > 0, 1.0 / d, torch.zeros_like(d))
    v = blocks * inv
    q = torch.sign(v) * torch.floor(v.abs() + 0.5)  # C roundf: half away from zero
    return (q * d.half().float()).reshape(x.shape)


def rounding_for(qtype: str, in_features: int):
    """The activation rounding llama.cpp applies before a ``qtype`` matrix, or ``None``."""
    if qtype in K_QUANTS and in_features % 256 == 0:
        return _q8_k
    if qtype in LEGACY and in_features % 32 == 0:
        return _q8_0
    if qtype == "F16":
        return lambda x: x.half().float()
    if qtype == "BF16":
        return lambda x: x.bfloat16().float()
    return None


class _Rounded:
    """A linear op whose input is rounded as ggml would before the product."""

    __slots__ = ("op", "round", "in_features", "out_features")

    def __init__(self, op: Any, rounding) -> None:
        self.op, self.round = op, rounding
        self.in_features = getattr(op, "in_features", None)
        self.out_features = getattr(op, "out_features", None)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(self.round(x.float()).to(x.dtype))


def emulate_ggml(model: Any, tensors: dict[str, Any]) -> int:
    """Wrap ``model``'s linears (DecoderLM layout) with ggml's activation rounding for the type
    of the tensor each one was built from; returns how many ops were wrapped."""
    ops = [(model, "lm_head", "output.weight" if "output.weight" in tensors
            else "token_embd.weight")]
    for i, layer in enumerate(model.layers):
        p = f"blk.{i}"
        ops += [(layer, "q", f"{p}.attn_q.weight"), (layer, "k", f"{p}.attn_k.weight"),
                (layer, "v", f"{p}.attn_v.weight"), (layer, "o", f"{p}.attn_output.weight"),
                (layer.mlp, "gate", f"{p}.ffn_gate.weight"),
                (layer.mlp, "up", f"{p}.ffn_up.weight"),
                (layer.mlp, "down", f"{p}.ffn_down.weight")]
    wrapped = 0
    for owner, attr, name in ops:
        weight = tensors.get(name)
        if weight is None:
            continue
        rounding = rounding_for(str(weight.qtype), int(weight.shape[-1]))
        if rounding is not None:
            setattr(owner, attr, _Rounded(getattr(owner, attr), rounding))
            wrapped += 1
    return wrapped
