"""``forge eval perplexity MODEL FILE [--ctx 512] [--batch N]``."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("eval")
def eval_group() -> None:
    """Evaluate a model on text with forge's engine (CPU backend, float32 weights)."""


@eval_group.command("perplexity")
@click.argument("model")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--ctx", default=512, show_default=True, type=click.IntRange(min=4),
              help="Window length in tokens (llama-perplexity's -c).")
@click.option("--batch", default=None, type=click.IntRange(min=1),
              help="Tokens per forward step (default: ctx); does not change the result.")
@click.option("--activations", type=click.Choice(["ggml", "fp32"]), default="ggml",
              show_default=True,
              help="ggml: round activations as llama.cpp's CPU backend does (figures compare "
                   "with llama-perplexity); fp32: exact float32 activations.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def perplexity_command(model: str, file: Path, ctx: int, batch: int | None,
                       activations: str, as_json: bool) -> None:
    """Perplexity of MODEL (a path or a stored/built-in name) on the text FILE, computed as
    llama-perplexity does: non-overlapping ctx windows, second half of each scored."""
    import json
    from dataclasses import asdict

    from tqdm import tqdm

    from forge_plugin_eval.score import perplexity, read_text

    read_text(file)  # a bad file fails before the model loads
    bar = tqdm(total=None, unit="window", desc="perplexity")

    def step(done: int, total: int, ppl: float) -> None:
        bar.total = total
        bar.set_postfix_str(f"ppl {ppl:.4f}", refresh=False)
        bar.update(1)

    try:
        result = perplexity(model, file, ctx=ctx, batch=batch, activations=activations,
                            progress=step)
    finally:
        bar.close()
    if as_json:
        click.echo(json.dumps(asdict(result)))
    else:
        click.echo(",".join(f"[{i + 1}]{p:.4f}" for i, p in enumerate(result.window_ppl)))
        click.echo(f"Final estimate: PPL = {result.ppl:.4f} +/- {result.stderr:.5f}")
        click.echo(result.describe())
