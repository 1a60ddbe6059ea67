"""``forge quantize SOURCE --type Q4_K_M [--output FILE]``."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("quantize")
@click.argument("source", required=False)
@click.option("--method", default="ggml", show_default=True, help="Quantizer (only ggml here).")
@click.option("--type", "qtype", default="Q4_K_M", show_default=True,
              help="File type: F32 F16 BF16 Q8_0 Q4_0 Q5_0 Q5_1 Q4_K(_S) Q4_K_M Q5_K(_S) "
                   "Q5_K_M Q6_K.")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="Output GGUF file (default: SOURCE stem + type).")
def quantize_command(source: str | None, method: str, qtype: str, output: Path | None) -> None:
    """Quantize a GGUF file or a Hugging Face safetensors directory to GGUF."""
    from forge_kernel.store import resolve_model
    from tqdm import tqdm

    from forge_kernel.errors import ForgeError
    from forge_plugin_ggml_quant.convert import quantize_file

    if method != "ggml":
        raise ForgeError(f"unknown --method {method!r} (installed: ggml)")
    path = Path(resolve_model(source))
    if output is None:
        output = Path.cwd() / f"{path.stem if path.is_file() else path.name}-{qtype.upper()}.gguf"
    bar = tqdm(total=None, unit="tensor", desc="quantize")

    def step(done: int, total: int, name: str) -> None:
        bar.total = total
        bar.set_postfix_str(name, refresh=False)
        bar.update(1)

    try:
        summary = quantize_file(path, output, qtype, progress=step)
    finally:
        bar.close()
    click.echo(summary.describe())
