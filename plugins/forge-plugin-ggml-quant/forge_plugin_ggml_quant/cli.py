"""``forge quantize SOURCE [--method NAME] [--type T | --bpw B] [--imatrix F | --calibrate TEXT]``.

The command dispatches to whichever quantizer is registered as ``--method`` (this plugin's
``ggml``, forge-plugin-exl2's ``exl2``, ...) through the contract in
:mod:`forge_kernel.interfaces.quantizer`, shows a per-tensor progress bar, prints the summary
(size before/after, bits per weight, time) and registers the output in the model store with its
lineage (:mod:`forge_plugin_ggml_quant.lineage`).
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("quantize")
@click.argument("source", required=False)
@click.option("--method", default="ggml", show_default=True,
              help="Quantizer registered by a plugin (ggml, exl2, ...).")
@click.option("--type", "qtype", default=None,
              help="Type (ggml, default Q4_K_M): F32 F16 BF16 Q8_0 Q4_0 Q5_0 Q5_1 Q4_K(_S) "
                   "Q4_K_M Q5_K(_S) Q5_K_M Q6_K.")
@click.option("--bpw", type=float, default=None, help="Target bits per weight (exl2).")
@click.option("--imatrix", type=click.Path(path_type=Path), default=None,
              help="Importance matrix (llama.cpp imatrix, GGUF or legacy .dat).")
@click.option("--calibrate", "calibration", type=click.Path(path_type=Path), default=None,
              help="Calibration text: statistics are computed from it with forge's engine.")
@click.option("--save-imatrix", type=click.Path(path_type=Path), default=None,
              help="With --calibrate (ggml): also write the importance matrix (GGUF).")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="Output path (default: SOURCE stem + type, in the current directory).")
@click.option("--name", default=None, help="Store name (default: the output's stem).")
@click.option("--no-store", is_flag=True, help="Do not register the output in the model store.")
def quantize_command(source: str | None, method: str, qtype: str | None, bpw: float | None,
                     imatrix: Path | None, calibration: Path | None, save_imatrix: Path | None,
                     output: Path | None, name: str | None, no_store: bool) -> None:
    """Quantize SOURCE (a model path or name; default: the built-in model)."""
    import time

    from tqdm import tqdm

    from forge_kernel.engine.builder import resolve_model_path
    from forge_kernel.errors import ForgeError, UnknownImplementationError
    from forge_kernel.plugins import get_host
    from forge_plugin_ggml_quant.lineage import register_output, summarize

    registry = get_host().registry
    try:
        quantizer = registry.create("quantizer", method)
    except UnknownImplementationError:
        installed = ", ".join(registry.names("quantizer")) or "none"
        raise ForgeError(f"unknown --method {method!r} (installed quantizers: {installed})"
                         ) from None
    options = {"bpw": bpw, "imatrix": imatrix, "calibration": calibration}
    quantizer.check_options(options)
    if qtype is not None and quantizer.types and qtype.upper() not in quantizer.types:
        raise ForgeError(f"unknown --type {qtype!r} for {method}; known: "
                         f"{', '.join(quantizer.types)}")
    if save_imatrix is not None:
        if method != "ggml" or calibration is None:
            raise ForgeError("--save-imatrix needs --method ggml and --calibrate TEXT")
        quantizer.save_imatrix_to = save_imatrix
    path = Path(resolve_model_path(source))
    label = (qtype or "").upper() or (f"{bpw:g}bpw" if bpw is not None else method)
    if output is None:
        stem = path.stem if path.is_file() else path.name
        suffix = ".gguf" if method == "ggml" else ""
        output = Path.cwd() / f"{stem}-{label}{suffix}"
    bar = tqdm(total=None, unit="tensor", desc=f"quantize {method}")

    def step(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    started = time.perf_counter()
    try:
        written = Path(quantizer.quantize(path, output, qtype.upper() if qtype else None,
                                          progress=step, **options))
    except ValueError as exc:
        raise ForgeError(str(exc)) from exc
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    summary = summarize(quantizer, path, written, seconds)
    click.echo(summary["text"])
    if (report := quantizer.report()) is not None:  # its own figures (EXL2: the layers' bpw)
        click.echo(report)
    if not no_store:
        record = register_output(name or written.stem.removesuffix(".gguf"), path, written,
                                 method, summary, imatrix=imatrix, calibration=calibration)
        click.echo(f"stored as {record.name!r} (forge show {record.name})")
