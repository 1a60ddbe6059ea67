"""The EXL2 tensor layout of one linear layer (as exllamav2 stores it), packing and unpacking.

For a layer ``PREFIX`` (a Hugging Face module name such as ``model.layers.0.mlp.down_proj``):

* ``PREFIX.q_weight`` int32 ``[qrows, out_features]``: each group's levels (0..2^b-1) of each
  output column form one little-endian bit stream down the rows, ``b`` bits per row, packed
  into 32-bit words (8 rows per word at 4 bits, 32 rows per 3 words at 3 bits, ...); groups
  follow each other in activation order, most bits first.
* ``PREFIX.q_scale`` int32 ``[groups, out_features / 8]``: 4-bit column scales ``qs - 1``,
  eight per word, lowest nibble first.
* ``PREFIX.q_scale_max`` float16 ``[groups]``: the group's scale maximum.
* ``PREFIX.q_groups`` int16 ``[2 * groups]``: ``(bits, first q_weight row)`` per group.
* ``PREFIX.q_invperm`` int32 ``[in_features]``: position of each input feature in activation
  order (``q_perm``, its inverse, is derived at load time, as exllamav2 does).

A weight decodes as ``w[perm[k], n] = (level[k, n] - 2^(b-1)) * qs[g, n]^2 * qscale_max[g] / 256``
for row ``k`` of group ``g``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from forge_plugin_exl2.gptq import QuantizedLinear, decode_scale

SUFFIXES = ("q_weight", "q_scale", "q_scale_max", "q_groups", "q_invperm")


class Exl2FormatError(ValueError):
    """Tensors of a layer that do not form a valid EXL2 layout."""


def pack_bits(levels: np.ndarray, bits: int) -> np.ndarray:
    """``levels`` ``[rows, cols]`` (``rows`` a multiple of 32) -> int32 ``[rows*bits/32, cols]``."""
    rows, cols = levels.shape
    if rows % 32:
        raise Exl2FormatError(f"a group of {rows} rows is not a multiple of 32")
    v = levels.astype(np.uint64).reshape(rows // 32, 32, cols)
    out = np.zeros((rows // 32, bits, cols), dtype=np.uint64)
    for i in range(32):
        pos = i * bits
        word, shift = divmod(pos, 32)
        out[:, word] |= (v[:, i] << np.uint64(shift)) & np.uint64(0xFFFFFFFF)
        if shift + bits > 32:
            out[:, word + 1] |= v[:, i] >> np.uint64(32 - shift)
    return out.reshape(rows // 32 * bits, cols).astype(np.uint32).view(np.int32)


def unpack_bits(packed: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: int32 ``[qrows, cols]`` -> levels ``[qrows*32/bits, cols]``."""
    qrows, cols = packed.shape
    if qrows % bits:
        raise Exl2FormatError(f"{qrows} packed rows do not hold whole {bits}-bit blocks")
    words = packed.view(np.uint32).astype(np.uint64).reshape(qrows // bits, bits, cols)
    mask = np.uint64((1 << bits) - 1)
    out = np.empty((qrows // bits, 32, cols), dtype=np.int16)
    for i in range(32):
        word, shift = divmod(i * bits, 32)
        value = words[:, word] >> np.uint64(shift)
        if shift + bits > 32:
            value |= words[:, word + 1] << np.uint64(32 - shift)
        out[:, i] = (value & mask).astype(np.int16)
    return out.reshape(-1, cols)


def pack_linear(prefix: str, q: QuantizedLinear) -> dict[str, np.ndarray]:
    """The EXL2 tensors of one quantized layer."""
    rows, cols = q.qweight.shape
    if cols % 8:
        raise Exl2FormatError(f"{prefix}: {cols} output features is not a multiple of 8")
    levels = q.qweight.numpy()
    parts, starts, row, qrow = [], [], 0, 0
    for bits, n in q.groups:
        starts += [bits, qrow]
        packed = pack_bits(levels[row:row + n], bits)
        parts.append(packed)
        row += n
        qrow += packed.shape[0]
    nibbles = (q.qscale.numpy().astype(np.uint32) - 1).reshape(len(q.groups), cols // 8, 8)
    scale_words = np.zeros((len(q.groups), cols // 8), dtype=np.uint32)
    for i in range(8):
        scale_words |= nibbles[:, :, i] << np.uint32(4 * i)
    invperm = torch.argsort(q.perm).numpy().astype(np.int32)
    return {
        f"{prefix}.q_weight": np.concatenate(parts, axis=0),
        f"{prefix}.q_scale": scale_words.view(np.int32),
        f"{prefix}.q_scale_max": q.qscale_max.numpy().astype(np.float16),
        f"{prefix}.q_groups": np.array(starts, dtype=np.int16),
        f"{prefix}.q_invperm": invperm,
    }


def unpack_linear(prefix: str, tensors: Mapping[str, np.ndarray]) -> np.ndarray:
    """Dequantize one layer's EXL2 tensors to float32 ``[out_features, in_features]``."""
    try:
        q_weight, q_scale, q_scale_max, q_groups, q_invperm = (
            np.asarray(tensors[f"{prefix}.{s}"]) for s in SUFFIXES)
    except KeyError as exc:
        raise Exl2FormatError(f"{prefix}: tensor {exc.args[0]!r} missing") from None
    qrows, cols = q_weight.shape
    groups = q_groups.reshape(-1, 2).astype(np.int64)
    if q_scale.shape != (len(groups), cols // 8) or q_scale_max.shape != (len(groups),):
        raise Exl2FormatError(f"{prefix}: q_scale {q_scale.shape} / q_scale_max "
                              f"{q_scale_max.shape} do not match {len(groups)} groups")
    words = q_scale.view(np.uint32)
    qs = np.stack([(words >> np.uint32(4 * i)) & np.uint32(15) for i in range(8)], axis=-1)
    qs = qs.reshape(len(groups), cols).astype(np.int16) + 1
    scales = decode_scale(qs, q_scale_max[:, None])
    rows_out = []
    for g, (bits, start) in enumerate(groups):
        end = groups[g + 1][1] if g + 1 < len(groups) else qrows
        if bits not in (2, 3, 4, 5, 6, 8) or not 0 <= start < end <= qrows:
            raise Exl2FormatError(f"{prefix}: group {g} has bits={bits}, rows {start}..{end}")
        levels = unpack_bits(q_weight[start:end], int(bits)).astype(np.float32)
        rows_out.append((levels - np.float32(2 ** (bits - 1))) * scales[g])
    permuted = np.concatenate(rows_out, axis=0)  # [in_features, out] in activation order
    if permuted.shape[0] != q_invperm.shape[0]:
        raise Exl2FormatError(f"{prefix}: groups cover {permuted.shape[0]} rows, q_invperm "
                              f"has {q_invperm.shape[0]}")
    return np.ascontiguousarray(permuted[q_invperm.astype(np.int64)].T)
