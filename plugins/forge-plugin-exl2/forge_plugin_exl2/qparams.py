"""Quantization parameters of one linear layer, as exllamav2 describes them, and their cost.

A layer's input rows (in activation order: most active input features first) are split into
groups; each group has one bit width and its own 4-bit scale per output column. ``bits`` are
listed from most to fewest (the most active rows get the most bits), ``bits_prop`` is the share
of rows at each width, and ``group_size`` may differ per width. exllamav2's kernels walk the
groups in that order (8-bit rows first, then 6, 5, 4, 3, 2), so a layout is always sorted by
descending bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCALE_BITS = 4
VALID_BITS = (2, 3, 4, 5, 6, 8)


@dataclass(slots=True, frozen=True)
class QParams:
    """One candidate: ``bits[i]`` for ``bits_prop[i]`` of the rows in groups of
    ``group_size[i]`` rows, ``scale_bits``-bit scales."""

    group_size: tuple[int, ...]
    bits: tuple[int, ...]
    bits_prop: tuple[float, ...]
    scale_bits: int = SCALE_BITS

    def __post_init__(self) -> None:
        if not (len(self.group_size) == len(self.bits) == len(self.bits_prop)):
            raise ValueError(f"{self}: group_size, bits and bits_prop differ in length")
        if any(b not in VALID_BITS for b in self.bits) or list(self.bits) != sorted(
                self.bits, reverse=True):
            raise ValueError(f"{self}: bits must be from {VALID_BITS}, most bits first")
        if abs(sum(self.bits_prop) - 1.0) > 1e-9 or any(p <= 0 for p in self.bits_prop):
            raise ValueError(f"{self}: bits_prop must be positive and sum to 1")
        if any(g % 32 for g in self.group_size):
            raise ValueError(f"{self}: group sizes must be multiples of 32")

    def groups(self, rows: int) -> list[tuple[int, int]]:
        """``(bits, rows)`` of each group for a layer with ``rows`` input features, in order.
        Same rounding as exllamav2: each width gets ``ceil(share / group_size)`` groups, the
        last group is cut at the end of the matrix."""
        out: list[tuple[int, int]] = []
        remaining = rows
        for b, p, gsz in zip(self.bits, self.bits_prop, self.group_size, strict=True):
            count = math.ceil(min(rows * p, remaining) / gsz)
            for _ in range(count):
                if remaining <= 0:
                    break
                n = min(gsz, remaining)
                out.append((b, n))
                remaining -= n
        if remaining > 0:  # rounding left rows over: the last width takes them
            b, gsz = self.bits[-1], self.group_size[-1]
            while remaining > 0:
                n = min(gsz, remaining)
                out.append((b, n))
                remaining -= n
        return out

    def total_bits(self, rows: int, columns: int) -> int:
        """Bits the packed layer occupies, every tensor counted (as exllamav2's ``total_bits``):
        q_weight, q_scale, q_scale_max (fp16), q_groups (2 x int16) and q_invperm (int32)."""
        groups = self.groups(rows)
        bits = sum(b * n * columns for b, n in groups)
        bits += len(groups) * (16 + 32 + columns * self.scale_bits)
        return bits + rows * 32

    def bpw(self, rows: int, columns: int) -> float:
        return self.total_bits(rows, columns) / (rows * columns)

    @property
    def desc(self) -> str:
        parts = [f"{p:g}:{b}b_{g}g" for b, p, g in zip(self.bits, self.bits_prop,
                                                        self.group_size, strict=True)]
        return "/".join(parts) + f" s{self.scale_bits}"

    def to_dict(self) -> dict:
        return {"group_size": {str(b): g for b, g in zip(self.bits, self.group_size,
                                                          strict=True)},
                "bits": list(self.bits), "bits_prop": list(self.bits_prop),
                "scale_bits": self.scale_bits}


def qp(group_size: int | tuple[int, ...], bits: tuple[int, ...],
       prop: tuple[float, ...] = (1.0,)) -> QParams:
    sizes = group_size if isinstance(group_size, tuple) else (group_size,) * len(bits)
    return QParams(sizes, bits, prop)


CANDIDATES: tuple[QParams, ...] = (
    qp(64, (3, 2), (0.1, 0.9)),
    qp(128, (4, 3), (0.1, 0.9)),
    qp(128, (4, 3), (0.5, 0.5)),
    qp(128, (4,)),
    qp(128, (5, 4), (0.1, 0.9)),
    qp(128, (5,)),
    qp(128, (6, 5), (0.1, 0.9)),
    qp(128, (6,)),
    qp(128, (8,)),
)
"""The options every layer is measured at: a ladder from ~2.2 to ~8.1 bits per weight, in
exllamav2's style (mixed widths within a layer, 64/128-row groups, 4-bit scales). Nine, not
exllamav2's dozens: each costs one GPTQ run per layer on the 2-core CPU."""

UNIFORM_4BIT = qp(128, (4,))
"""The uniform baseline: 4 bits, 128-row groups, 4-bit scales (~4.04 bpw for 640-wide rows)."""

MIN_BPW, MAX_BPW = 2.0, 8.0
