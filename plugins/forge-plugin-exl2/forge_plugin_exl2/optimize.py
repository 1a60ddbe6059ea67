"""Per-layer bit allocation: pick one measured option per layer so the total size meets the
bits-per-weight budget with the least total error (a multiple-choice knapsack).

Lagrangian relaxation: for a price ``lam`` per bit every layer independently takes the option
minimising ``error + lam * bits``; bisection on ``lam`` finds the cheapest price whose choice
fits the budget. The bits left under the budget are then spent greedily on the upgrades with the
best error reduction per extra bit. Errors are additive across layers, so this is the usual
near-optimal solution (exact on the convex hull of each layer's options).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class LayerOptions:
    """One layer's measured options: ``bits[i]`` (whole packed size) and ``error[i]``."""

    name: str
    numel: int
    bits: list[int]
    error: list[float]


def _pick(layers: list[LayerOptions], lam: float) -> list[int]:
    return [min(range(len(lo.bits)), key=lambda i: (lo.error[i] + lam * lo.bits[i], lo.bits[i]))
            for lo in layers]


def _total(layers: list[LayerOptions], choice: list[int]) -> int:
    return sum(lo.bits[c] for lo, c in zip(layers, choice, strict=True))


def allocate(layers: list[LayerOptions], bpw: float) -> list[int]:
    """The chosen option index per layer; ``ValueError`` when even the smallest options do
    not fit ``bpw``."""
    numel = sum(lo.numel for lo in layers)
    budget = bpw * numel
    smallest = [min(range(len(lo.bits)), key=lo.bits.__getitem__) for lo in layers]
    if _total(layers, smallest) > budget:
        raise ValueError(f"--bpw {bpw} is below the smallest layout measured "
                         f"({_total(layers, smallest) / numel:.3f} bpw)")
    top = max(max(lo.error) for lo in layers) + 1.0
    lo_lam, hi_lam = 0.0, top  # at hi every layer takes its smallest option
    choice = _pick(layers, 0.0)
    if _total(layers, choice) > budget:
        for _ in range(100):
            mid = (lo_lam + hi_lam) / 2
            if _total(layers, _pick(layers, mid)) > budget:
                lo_lam = mid
            else:
                hi_lam = mid
        choice = _pick(layers, hi_lam)
        if _total(layers, choice) > budget:
            choice = smallest
    used = _total(layers, choice)
    while True:  # spend what is left on the best error-per-bit upgrades
        best, best_gain = None, 0.0
        for k, lo in enumerate(layers):
            c = choice[k]
            for i in range(len(lo.bits)):
                extra = lo.bits[i] - lo.bits[c]
                gain = lo.error[c] - lo.error[i]
                if extra > 0 and gain > 0 and used + extra <= budget:
                    if gain / extra > best_gain:
                        best, best_gain = (k, i, extra), gain / extra
        if best is None:
            return choice
        k, i, extra = best
        choice[k] = i
        used += extra
