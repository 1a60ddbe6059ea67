"""One EXL2 conversion: calibrate, measure every layer at every candidate, allocate bits,
quantize for real, write the directory atomically.

Errors are *relative* Hessian-weighted errors ``tr(D H D^T) / tr(W H W^T)`` (the share of the
layer's output energy the quantization changes). The allocator sums them over layers: the
absolute figure is not comparable between layers whose outputs are renormalised (Gemma's
post-attention/post-FFN norms, q/k norms), the relative one is; exllamav2 also optimises
relative output errors. Measurement runs on at most :data:`MEASURE_COLUMNS` output columns
(a fixed random subset): the error is a sum over columns, so the subset estimates it without
bias at a fraction of the cost. The chosen option is then re-run on the whole matrix.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from forge_kernel.interfaces.loader import ModelSource
from forge_plugin_exl2 import gptq
from forge_plugin_exl2.measure import calibration_windows, collect_hessians
from forge_plugin_exl2.optimize import LayerOptions, allocate
from forge_plugin_exl2.qparams import CANDIDATES, QParams

MEASURE_COLUMNS = 128
LINEARS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


@dataclass(slots=True)
class Plan:
    """What to write: per layer name, its options, measured errors and the choice."""

    names: list[str]
    shapes: dict[str, tuple[int, int]]
    options: list[LayerOptions]
    choice: dict[str, QParams] = field(default_factory=dict)
    candidates: tuple[QParams, ...] = CANDIDATES

    def bits(self) -> int:
        return sum(self.choice[n].total_bits(self.shapes[n][1], self.shapes[n][0])
                   for n in self.names)

    def numel(self) -> int:
        return sum(a * b for a, b in (self.shapes[n] for n in self.names))


def linear_names(source: ModelSource) -> list[str]:
    """The projection weights of every layer, in layer order."""
    return [f"blk.{i}.{kind}.weight" for i in range(source.config.num_layers)
            for kind in LINEARS]


def check_shapes(source: ModelSource, names: list[str]) -> dict[str, tuple[int, int]]:
    shapes = {}
    for name in names:
        out_f, in_f = source.tensor(name).shape
        if in_f % 32 or out_f % 8:
            raise ValueError(f"{name}: shape ({out_f}, {in_f}) does not fit EXL2 (input "
                             f"features must be a multiple of 32, outputs of 8)")
        shapes[name] = (int(out_f), int(in_f))
    return shapes


def measure(source: ModelSource, hessians: dict[str, torch.Tensor], names: list[str],
            shapes: dict[str, tuple[int, int]], candidates: tuple[QParams, ...] = CANDIDATES,
            step: Callable[[str], None] | None = None,
            columns: int = MEASURE_COLUMNS, relative: bool = True) -> list[LayerOptions]:
    """Every layer quantized at every candidate (GPTQ), its relative error recorded."""
    rng = np.random.default_rng(0)
    out, preps = [], {}
    for name in names:
        h = hessians[name]
        key = id(h)  # q/k/v and gate/up share one Hessian object and so one factorisation
        if key not in preps:
            preps = {key: gptq.prepare_hessian(h)}
        prep = preps[key]
        w = source.tensor(name).dequantize().to(torch.float32)
        if w.shape[0] > columns:
            cols = np.sort(rng.choice(w.shape[0], columns, replace=False))
            w = w[torch.from_numpy(cols)]
        out_f, in_f = shapes[name]
        errors = []
        for params in candidates:
            err, energy = gptq.hessian_error(w, gptq.quantize(w, prep, params), prep)
            # relative: share of the output energy; absolute: summed squared output error
            errors.append(err / max(energy, 1e-30) if relative else err)
        out.append(LayerOptions(name, out_f * in_f,
                                [c.total_bits(in_f, out_f) for c in candidates], errors))
        if step:
            step(name)
    return out


def hessians_for(source: ModelSource, windows: list[list[int]], cache: Path | None = None,
                 threads: int | None = None, progress=None) -> dict[str, torch.Tensor]:
    """Calibration Hessians, read from / saved to ``cache`` when given (the benchmark's
    variants share one calibration; the key is the source and the exact windows)."""
    import hashlib

    key = hashlib.sha256(repr((str(source.path), windows)).encode()).hexdigest()[:16]
    file = Path(cache) / f"hessians-{key}.pt" if cache is not None else None
    if file is not None and file.is_file():
        return torch.load(file)
    hessians = collect_hessians(source, windows, threads=threads, progress=progress)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        torch.save(hessians, file)  # torch keeps the q/k/v (gate/up) sharing
    return hessians


def uniform_plan(source: ModelSource, text: str | None, params: QParams, ctx: int = 512,
                 max_windows: int = 16, threads: int | None = None, cache: Path | None = None
                 ) -> tuple[Plan, dict[str, torch.Tensor], int]:
    """Every layer at ``params`` (the uniform baselines); nothing measured. ``text=None``
    (round to nearest) skips calibration: identity Hessians, errors are plain weight errors."""
    names = linear_names(source)
    shapes = check_shapes(source, names)
    if text is None:
        eyes: dict[int, torch.Tensor] = {}
        hessians = {n: eyes.setdefault(shapes[n][1], torch.eye(shapes[n][1])) for n in names}
        return Plan(names, shapes, [], {n: params for n in names}, (params,)), hessians, 0
    windows = calibration_windows(source.tokenizer, text, ctx, max_windows)
    hessians = hessians_for(source, windows, cache, threads)
    return (Plan(names, shapes, [], {n: params for n in names}, (params,)), hessians,
            sum(len(w) for w in windows))


def plan(source: ModelSource, text: str, bpw: float, ctx: int = 512, max_windows: int = 16,
         step: Callable[[str], None] | None = None,
         candidates: tuple[QParams, ...] = CANDIDATES, threads: int | None = None,
         cache: Path | None = None, columns: int = MEASURE_COLUMNS, relative: bool = True
         ) -> tuple[Plan, dict[str, torch.Tensor], int]:
    """Calibrate and choose; returns the plan, the Hessians and the calibration token count."""
    names = linear_names(source)
    shapes = check_shapes(source, names)
    windows = calibration_windows(source.tokenizer, text, ctx, max_windows)
    hessians = hessians_for(source, windows, cache, threads,
                            progress=(lambda d, t: step(f"calibration {d}/{t}")) if step else None)
    options = measure(source, hessians, names, shapes, candidates, step, columns, relative)
    chosen = allocate(options, bpw)
    p = Plan(names, shapes, options,
             {lo.name: candidates[c] for lo, c in zip(options, chosen, strict=True)}, candidates)
    return p, hessians, sum(len(w) for w in windows)


def quantize_layers(source: ModelSource, p: Plan, hessians: dict[str, torch.Tensor],
                    gptq_on: bool = True, act_order: bool = True,
                    step: Callable[[str], None] | None = None):
    """Yield ``(name, QuantizedLinear, relative error)`` for each layer with its chosen option."""
    preps: dict[int, gptq.PreparedHessian] = {}
    for name in p.names:
        h = hessians[name]
        if id(h) not in preps:
            preps = {id(h): gptq.prepare_hessian(h, act_order=act_order)}
        prep = preps[id(h)]
        w = source.tensor(name).dequantize().to(torch.float32)
        q = gptq.quantize(w, prep, p.choice[name], gptq=gptq_on)
        cols = torch.arange(0, w.shape[0], max(1, w.shape[0] // MEASURE_COLUMNS))
        err, energy = gptq.hessian_error(w, q, prep, cols)  # every k-th output: an estimate
        if step:
            step(name)
        yield name, q, err / max(energy, 1e-30)


def measurement_json(p: Plan, final_errors: dict[str, float]) -> str:
    """exllamav2 keeps a measurement.json next to its models; ours lists per layer the
    options measured and the one chosen."""
    layers = []
    for lo in p.options:
        layers.append({
            "name": lo.name, "shape": list(p.shapes[lo.name]),
            "chosen": p.choice[lo.name].desc,
            "chosen_bpw": round(p.choice[lo.name].bpw(p.shapes[lo.name][1],
                                                      p.shapes[lo.name][0]), 4),
            "final_rel_error": final_errors.get(lo.name),
            "options": [{"desc": c.desc, "bpw": round(b / lo.numel, 4), "rel_error": e}
                        for c, b, e in zip(p.candidates, lo.bits, lo.error, strict=True)],
        })
    return json.dumps({"layers": layers}, indent=1)


def now() -> float:
    return time.perf_counter()
