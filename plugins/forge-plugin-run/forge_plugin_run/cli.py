"""``forge run``: generate from a model once, or chat with it interactively.

Output discipline (as ``ollama run``): when stdout is not a terminal only generated text goes to
stdout; everything else (loading messages, ``--verbose`` statistics) goes to stderr.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass

import click

from forge_kernel.cli.serve import engine_flags
from forge_kernel.errors import ForgeError


@dataclass(slots=True)
class GenerationStats:
    """Timings of one generation, printed by ``--verbose`` in ollama's format."""

    load_seconds: float = 0.0
    prompt_tokens: int = 0
    prompt_seconds: float = 0.0
    eval_tokens: int = 0
    eval_seconds: float = 0.0

    def lines(self) -> list[str]:
        def rate(tokens: int, seconds: float) -> str:
            return f"{tokens / seconds:.2f} tokens/s" if seconds > 0 else "n/a"

        total = self.load_seconds + self.prompt_seconds + self.eval_seconds
        return [
            f"total duration:       {total:.3f}s",
            f"load duration:        {self.load_seconds:.3f}s",
            f"prompt eval count:    {self.prompt_tokens} token(s)",
            f"prompt eval duration: {self.prompt_seconds:.3f}s",
            f"prompt eval rate:     {rate(self.prompt_tokens, self.prompt_seconds)}",
            f"eval count:           {self.eval_tokens} token(s)",
            f"eval duration:        {self.eval_seconds:.3f}s",
            f"eval rate:            {rate(self.eval_tokens, self.eval_seconds)}",
        ]


def _generate(engine, prompt_ids: list[int], params, stats: GenerationStats) -> str:
    """Stream one completion to stdout; return its text. The first token comes from the
    prefill (prompt evaluation), the rest from decode steps (evaluation)."""
    start = time.perf_counter()
    first = None
    text: list[str] = []
    for delta in engine.generate(prompt_ids, params):
        now = time.perf_counter()
        if first is None and delta.token_ids:
            first = now
        stats.eval_tokens += len(delta.token_ids)
        if delta.text:
            text.append(delta.text)
            sys.stdout.write(delta.text)
            sys.stdout.flush()
    end = time.perf_counter()
    first = first or end
    stats.prompt_tokens += len(prompt_ids)
    stats.prompt_seconds += first - start
    stats.eval_tokens -= 1 if stats.eval_tokens else 0  # the prefill's token
    stats.eval_seconds += end - first
    return "".join(text)


def _prompt_ids(tokenizer, messages: list[dict[str, str]], raw: bool) -> list[int]:
    if raw:
        return tokenizer.encode(messages[-1]["content"], add_special_tokens=True)
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    # the template writes BOS itself when the model wants one
    return tokenizer.encode(rendered, add_special_tokens=False)


@click.command("run")
@click.argument("model", required=False)
@click.argument("prompt", required=False)
@click.option("--max-tokens", type=click.IntRange(min=1), default=None,
              help="Stop after this many generated tokens (default: until the model stops).")
@click.option("--temperature", type=click.FloatRange(min=0.0), default=None,
              help="Sampling temperature; 0 is greedy (default: the model's, else 0.8).")
@click.option("--top-p", type=click.FloatRange(0.0, 1.0), default=None)
@click.option("--top-k", type=click.IntRange(min=0), default=None)
@click.option("--seed", type=int, default=None, help="Seed for reproducible sampling.")
@click.option("--raw", is_flag=True, help="Send the prompt as is, without the chat template.")
@click.option("--verbose", is_flag=True, help="Print timing statistics to stderr.")
@engine_flags
def run_command(model, prompt, max_tokens, temperature, top_p, top_k, seed, raw, verbose,
                **engine_flags) -> None:
    """Generate text with MODEL (default: the configuration's model, else the embedded Gemma
    3 270M). Engine settings come from the configuration (file, FORGE_* variables) like
    `forge serve`'s; the flags here override them.

    With PROMPT (or text on a non-terminal stdin) it answers once; otherwise it starts an
    interactive chat (type /bye or press Ctrl-D to leave). A single argument that is not a known
    model or path is taken as the prompt for the default model.
    """
    from forge_kernel.config import load_config
    from forge_kernel.engine.config import find_model, require_backend
    from forge_kernel.plugins import get_host

    host = get_host()
    require_backend(host, "forge run")  # before reading stdin or importing torch
    if model is not None and prompt is None and find_model(host, model) is None:
        model, prompt = None, model
    if prompt is None and not sys.stdin.isatty():
        prompt = sys.stdin.read()
    config = load_config({"model": model, **engine_flags})  # flags named like config keys

    try:
        from forge_kernel.engine.builder import build_engine
        from forge_kernel.engine.types import SamplingParams

        started = time.perf_counter()
        # one conversation at a time: a batch of one keeps the engine's buffers small
        engine = build_engine(dataclasses.replace(config.engine, max_batch_size=1))
        stats = GenerationStats(load_seconds=time.perf_counter() - started)
    except (ForgeError, KeyError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)

    defaults = engine.generation_defaults()
    params = SamplingParams(
        max_tokens=max_tokens,
        temperature=temperature if temperature is not None else defaults.get("temperature", 0.8),
        top_p=top_p if top_p is not None else defaults.get("top_p", 1.0),
        top_k=top_k if top_k is not None else defaults.get("top_k", 0),
        seed=seed,
    )
    tokenizer = engine.tokenizer
    if prompt is not None:
        _generate(engine, _prompt_ids(tokenizer, [{"role": "user", "content": prompt}], raw),
                  params, stats)
        if sys.stdout.isatty():
            sys.stdout.write("\n")
        else:
            sys.stdout.flush()
        if verbose:
            click.echo("\n".join(stats.lines()), err=True)
        return

    history: list[dict[str, str]] = []
    while True:
        try:
            line = input(">>> ")
        except (EOFError, KeyboardInterrupt):
            click.echo("", err=True)
            return
        if line.strip() in {"/bye", "/exit"}:
            return
        if not line.strip():
            continue
        history.append({"role": "user", "content": line})
        turn = GenerationStats()
        try:
            reply = _generate(engine, _prompt_ids(tokenizer, history, raw), params, turn)
        except KeyboardInterrupt:
            reply = ""
        sys.stdout.write("\n\n")
        history.append({"role": "assistant", "content": reply})
        if verbose:
            click.echo("\n".join(turn.lines()), err=True)
