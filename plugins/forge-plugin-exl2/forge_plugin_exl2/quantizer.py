"""The ``exl2`` :class:`~forge_kernel.interfaces.quantizer.Quantizer`: ``forge quantize SOURCE
--method exl2 --bpw 4.0 [--calibration TEXT] [--output DIR]``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from forge_kernel.errors import ForgeError
from forge_kernel.interfaces.loader import ModelSource
from forge_kernel.interfaces.quantizer import Quantizer
from forge_plugin_exl2.qparams import MAX_BPW, MIN_BPW, QParams

DEFAULT_BPW = 4.0
CALIBRATION = Path(__file__).with_name("data") / "calibration.txt"
"""The built-in calibration text (written for this plugin; not the benchmark's held-out
text)."""


class Exl2Error(ForgeError, ValueError):
    """Bad input to the EXL2 quantizer (message says what and why)."""


@dataclass(slots=True)
class Exl2Summary:
    """What a conversion did."""

    output: Path
    source_bytes: int
    output_bytes: int
    layers: int
    bpw: float
    """Achieved bits per weight over the quantized layers, every stored tensor counted."""
    target_bpw: float | None
    seconds: float
    calibration_tokens: int
    mix: dict[str, int]
    parameters: int = 0
    """Every weight of the model (quantized layers and float tensors)."""

    @property
    def types(self) -> dict[str, int]:
        """Layer count per layout, plus the tensors kept as floats (what ``forge quantize``
        lists)."""
        return {**self.mix, "float (embedding, norms)": self.float_tensors}

    @property
    def file_type(self) -> str:
        return f"EXL2 {self.bpw:.3f} bpw"

    float_tensors: int = 0

    def describe(self) -> str:
        mix = ", ".join(f"{k}: {v}" for k, v in sorted(self.mix.items(), key=lambda kv: -kv[1]))
        target = f" (target {self.target_bpw})" if self.target_bpw is not None else ""
        return (f"wrote {self.output}: {self.layers} layers at {self.bpw:.3f} bpw{target}; "
                f"{self.source_bytes / 2**20:.1f} MiB -> {self.output_bytes / 2**20:.1f} MiB; "
                f"{self.calibration_tokens} calibration tokens; {self.seconds:.1f} s\n"
                f"layouts: {mix}")


def read_calibration(path: str | Path | None) -> tuple[str, str]:
    """``(text, name)`` of the calibration file; the built-in text when ``path`` is None."""
    file = Path(path) if path is not None else CALIBRATION
    if not file.is_file():
        raise Exl2Error(f"calibration text {file} does not exist" if not file.exists()
                        else f"calibration text {file} is not a file")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise Exl2Error(f"calibration text {file} is not UTF-8 ({exc})") from None
    if not text.strip():
        raise Exl2Error(f"calibration text {file} is empty")
    return text, file.name


def check_bpw(bpw: Any) -> float:
    try:
        value = float(bpw)
    except (TypeError, ValueError):
        raise Exl2Error(f"--bpw must be a number, got {bpw!r}") from None
    if not MIN_BPW <= value <= MAX_BPW:
        raise Exl2Error(f"--bpw {value} is out of range: EXL2 supports {MIN_BPW} to {MAX_BPW} "
                        f"bits per weight")
    return value


def open_source(source: ModelSource | Path | str) -> ModelSource:
    from forge_kernel.errors import ModelFormatError
    from forge_kernel.modeling import open_model_source

    if isinstance(source, ModelSource):
        return source
    try:
        return open_model_source(Path(source))
    except ModelFormatError as exc:
        raise Exl2Error(f"unsupported source: {exc}") from None


class Exl2Quantizer(Quantizer):
    """EXL2 mixed bit-width quantization with GPTQ; writes an exllamav2-layout directory."""

    name = "exl2"
    types = ("EXL2",)
    options = frozenset({"bpw", "calibration"})
    last_summary = None
    """The summary of the last :meth:`quantize` run."""

    def quantize(self, source: ModelSource | Path, output: Path, qtype: str | None = None,
                 progress: Callable[[int, int], None] | None = None, **options: Any) -> Path:
        """Quantize to ``bpw`` (default 4.0) bits per weight using the ``calibration`` text
        (default: the built-in one). ``progress(done, total)`` counts calibration windows,
        measured layers and written layers."""
        given = self.check_options(options)
        if qtype is not None and qtype.upper() != "EXL2":
            raise Exl2Error(f"unknown type {qtype!r} for the exl2 quantizer (it writes EXL2; "
                            f"give --bpw instead)")
        summary = convert_model(source, Path(output),
                                bpw=check_bpw(given.get("bpw", DEFAULT_BPW)),
                                calibration=given.get("calibration"), progress=progress)
        self.last_summary = summary
        return summary.output

    def report(self) -> str | None:
        """The last run's layer bpw, layout mix and calibration size."""
        return self.last_summary.describe() if self.last_summary is not None else None


def convert_model(source: ModelSource | Path | str, output: Path, bpw: float | None = None,
                  calibration: str | Path | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  uniform: QParams | None = None, gptq: bool = True,
                  on_step: Callable[[str], None] | None = None,
                  max_windows: int = 16, ctx: int = 512,
                  hessian_cache: Path | None = None,
                  candidates: tuple[QParams, ...] | None = None,
                  measure_columns: int | None = None,
                  relative_error: bool = True) -> Exl2Summary:
    """The whole conversion. ``uniform`` skips measurement and puts every layer at that
    layout (``gptq=False``: round to nearest, no activation order) — the baselines the
    benchmark compares against."""
    from forge_plugin_exl2 import convert, writer
    from forge_plugin_exl2.hf_dir import SUPPORTED, write_meta_files

    start = time.perf_counter()
    text, text_name = read_calibration(calibration)
    src = open_source(source)
    if src.config.architecture not in SUPPORTED:
        raise Exl2Error(f"unsupported source architecture {src.config.architecture!r} "
                        f"(supported: {', '.join(SUPPORTED)})")
    output = Path(output)
    if output.exists():
        raise Exl2Error(f"{output} already exists; choose another --output or remove it")
    ctx = min(ctx, int(src.config.context_length))
    n_layers = len(convert.linear_names(src))
    total = max_windows + (0 if uniform else n_layers) + n_layers
    done = 0

    def step(label: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(min(done, total), total)
        if on_step:
            on_step(label)

    try:
        if uniform is None:
            plan, hessians, tokens = convert.plan(src, text, bpw, ctx=ctx,
                                                  max_windows=max_windows, step=step,
                                                  cache=hessian_cache,
                                                  candidates=candidates or convert.CANDIDATES,
                                                  columns=measure_columns
                                                  or convert.MEASURE_COLUMNS,
                                                  relative=relative_error)
        else:
            plan, hessians, tokens = convert.uniform_plan(src, text if gptq else None, uniform,
                                                          ctx=ctx, max_windows=max_windows,
                                                          cache=hessian_cache)
    except ValueError as exc:
        raise Exl2Error(str(exc)) from None
    done = total - n_layers  # calibration windows may be fewer than max_windows
    layers = convert.quantize_layers(src, plan, hessians, gptq_on=gptq, act_order=gptq,
                                     step=step)
    qcfg = {"quant_method": "exl2", "version": "forge-exl2-0.1", "bits": bpw,
            "head_bits": 16, "calibration": {"rows": -(-tokens // ctx), "length": ctx,
                                             "dataset": text_name},
            "forge": {"gptq": gptq, "uniform": uniform.desc if uniform else None}}
    with writer.atomic_dir(output) as tmp:
        tensors, errors = writer.pack_all(src, layers)
        tensors.update(writer.plain_tensors(src, set(plan.names)))
        writer.save_tensors(tmp, tensors)
        write_meta_files(tmp, src, qcfg)
        (tmp / "measurement.json").write_text(convert.measurement_json(plan, errors))
    if progress:
        progress(total, total)
    mix: dict[str, int] = {}
    for n in plan.names:
        mix[plan.choice[n].desc] = mix.get(plan.choice[n].desc, 0) + 1
    src_bytes = int(src.metadata.get("file_size") or 0) or (
        src.path.stat().st_size if src.path.is_file() else 0)
    return Exl2Summary(output, src_bytes, sum(f.stat().st_size for f in output.iterdir()),
                       len(plan.names), plan.bits() / plan.numel(), bpw,
                       time.perf_counter() - start, tokens, mix,
                       parameters=sum(int(np.prod(t.shape)) for t in src.tensors.values()),
                       float_tensors=len(src.tensors) - len(plan.names))
