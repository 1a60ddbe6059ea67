"""Single-stream decode speed with and without n-gram speculative decoding on a repetitive task.

    python benchmarks/bench_speculative.py [--model gemma3-270m] [--threads 2] [--gen 128]
                                           [--k 3,5,8] [--repeat 2] [--json out.json]

The task: the default model is asked to quote (then to lightly rewrite) a given passage, the
case prompt lookup is made for: most output tokens already appear in the prompt. Each
configuration runs the same greedy requests (``max_tokens=--gen``, one at a time) on a fresh
engine built through ``build_engine`` (what ``forge serve`` runs) and reports decode tokens/s
(first token excluded: it costs the prefill), mean tokens per engine step, the acceptance rate,
and whether the tokens equal those of decoding without speculation (greedy: they must).
"""

from __future__ import annotations

import argparse
import json
import time

PASSAGE = (
    "The river rose slowly through the night, and by morning the lower fields were under "
    "water. The farmers moved their animals to the high pasture behind the church, where the "
    "ground was firm and the grass was still green. Nobody in the village could remember a "
    "flood this early in the year, and the old miller said that the snow in the mountains "
    "must have melted all at once.")
TASKS = {
    "quote": f"Repeat the following text exactly, word for word:\n\n{PASSAGE}",
    "rewrite": f"Rewrite the following text in the present tense, changing nothing else:"
               f"\n\n{PASSAGE}",
}


def run(engine, ids: list[int], gen: int) -> dict:
    """One greedy request alone on ``engine``: its tokens and timings."""
    from forge_kernel.engine.types import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=gen, ignore_eos=True)
    before = engine.stats()
    times, tokens = [], []
    for delta in engine.generate(ids, params):
        times.append(time.perf_counter())
        tokens += delta.token_ids
    after = engine.stats()
    steps = after.num_steps - before.num_steps
    # Decode time runs from the first token (its step also did the prefill; a choice's first
    # token is never drafted, so that delta holds one token) to the last.
    decoded = len(tokens) - 1
    drafted = after.spec_draft_tokens - before.spec_draft_tokens
    accepted = after.spec_accepted_tokens - before.spec_accepted_tokens
    return {"tokens": tokens, "decode_s": times[-1] - times[0],
            "decode_tok_s": decoded / (times[-1] - times[0]),
            "tokens_per_step": len(tokens) / max(1, steps),
            "acceptance": accepted / drafted if drafted else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model (default: the embedded gemma3-270m)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--k", default="3,5,8", help="--num-speculative-tokens values to try")
    ap.add_argument("--repeat", type=int, default=2, help="runs per configuration (best kept)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()

    from forge_kernel.engine.builder import build_engine
    from forge_kernel.engine.config import EngineConfig

    base = EngineConfig(model=args.model, threads=args.threads, max_batch_size=1)
    tok = build_engine(base).tokenizer
    prompts = {name: tok.encode(tok.apply_chat_template([{"role": "user", "content": text}]),
                                add_special_tokens=False)
               for name, text in TASKS.items()}
    configs = [("off", base)] + [
        (f"ngram k={k}", EngineConfig(model=args.model, threads=args.threads, max_batch_size=1,
                                      speculative="ngram", num_speculative_tokens=int(k)))
        for k in args.k.split(",")]
    engines = {label: build_engine(config) for label, config in configs}
    # Interleaved (off, k=a, k=b, off, ...) so that load from other processes on a shared
    # machine hits every configuration alike; the best run of each is kept.
    runs: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.repeat):
        for name, ids in prompts.items():
            for label, engine in engines.items():
                r = run(engine, ids, args.gen)
                runs.setdefault((label, name), []).append(r)
                print(f"  {name} {label}: {r['decode_tok_s']:.1f} tok/s, "
                      f"{r['tokens_per_step']:.2f} tokens/step", flush=True)
    results = {label: {name: max(runs[(label, name)], key=lambda x: x["decode_tok_s"])
                       for name in prompts} for label in engines}
    ref = results["off"]
    print(f"single stream, greedy, {args.gen} new tokens, best of {args.repeat}; "
          f"prompt tokens: " + ", ".join(f"{n} {len(p)}" for n, p in prompts.items()))
    print("| task | speculation | decode tok/s | speed-up | tokens/step | acceptance | "
          "same tokens |")
    print("|---|---|---:|---:|---:|---:|---|")
    for label, per_task in results.items():
        for name, r in per_task.items():
            acc = "-" if r["acceptance"] is None else f"{100 * r['acceptance']:.0f}%"
            speed = r["decode_tok_s"] / ref[name]["decode_tok_s"]
            same = "yes" if r["tokens"] == ref[name]["tokens"] else "NO"
            print(f"| {name} | {label} | {r['decode_tok_s']:.1f} | {speed:.2f}x | "
                  f"{r['tokens_per_step']:.2f} | {acc} | {same} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({label: {n: {k: v for k, v in r.items() if k != "tokens"}
                               for n, r in per.items()} for label, per in results.items()},
                      f, indent=1)


if __name__ == "__main__":
    main()
