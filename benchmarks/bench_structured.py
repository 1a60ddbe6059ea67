"""Structured output on the default model through the engine (no HTTP): validity and overhead.

1. ``--validity``: 10 JSON schemas (nested objects, arrays, enums, numbers, required fields) x
   10 prompts, greedy and sampled (``--per-schema`` each); every output must parse and validate
   with ``jsonschema``. Prints the valid/total counts and the compile/first-mask times.
2. ``--overhead``: 16 concurrent streams of fixed length; run A has all 16 free, run B has half
   of them JSON-constrained (a string with ``minLength``, so they last the whole run). A and B
   alternate ``--repeats`` times (the machine is shared: a single pair is mostly noise).
   Reports the free streams' decode tok/s in both runs and the slowdown (the issue's bar:
   <= 10%), plus the time spent in the matchers (mask + accept) per step.

    python benchmarks/bench_structured.py --validity --overhead [--per-schema 10] [--repeats 3]

Numbers on a shared 2-core machine are noisy: run it alone and report the conditions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jsonschema
from forge_plugin_structured import matcher

from forge_kernel.engine.builder import build_engine
from forge_kernel.engine.types import SamplingParams
from forge_kernel.interfaces.constraint import ConstraintSpec

S, INT, N, B = {"type": "string", "maxLength": 24}, {"type": "integer"}, {"type": "number"}, \
    {"type": "boolean"}


def obj(props: dict, required: list[str] | None = None) -> dict:
    return {"type": "object", "properties": props, "required": required or list(props),
            "additionalProperties": False}


SCHEMAS = [
    obj({"name": S, "age": {"type": "integer", "minimum": 0, "maximum": 120}}),
    obj({"title": S, "tags": {"type": "array", "items": S, "maxItems": 4}}),
    obj({"city": S, "location": obj({"lat": N, "lon": N})}),
    obj({"status": {"enum": ["open", "closed", "pending"]}, "priority": INT}),
    obj({"product": S, "price": N, "in_stock": B}),
    obj({"user": obj({"id": INT, "email": S}), "roles": {"type": "array", "maxItems": 3,
                                                      "items": {"enum": ["admin", "dev"]}}}),
    obj({"points": {"type": "array", "maxItems": 3, "items": obj({"x": INT, "y": INT})}}),
    obj({"answer": {"enum": ["yes", "no"]}, "confidence": {"type": "number", "minimum": 0,
                                                          "maximum": 1}}),
    obj({"event": S, "date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
         "attendees": INT}),
    obj({"name": S, "nickname": S, "score": INT}, required=["name", "score"]),
]
PROMPTS = ["Give an example as JSON.", "Describe a random item as JSON.", "JSON please.",
           "Make up data.", "Return one record.", "Fill in the fields.", "An example, in JSON.",
           "Invent a plausible record.", "Write the JSON object.", "One more example."]


def run(engine, requests) -> tuple[list[str], list[list[float]]]:
    """Queue every request at once, step to the end: each one's text and token times
    (``run.finishes`` keeps the finish reasons of the last call)."""
    texts, times = [""] * len(requests), [[] for _ in requests]
    run.finishes = [None] * len(requests)
    for i, (prompt, params) in enumerate(requests):
        engine.add_request(f"b{i}", prompt, params)
    while engine.has_unfinished():
        events = engine.step()
        now = time.perf_counter()
        for rid, delta in events:
            i = int(rid[1:])
            texts[i] += delta.text
            times[i].append(now)
            run.finishes[i] = delta.finish_reason or run.finishes[i]
    return texts, times


def validity(engine, per_schema: int, only: list[int] | None = None) -> None:
    tok = engine.tokenizer
    valid = total = 0
    for k, schema in enumerate(SCHEMAS):
        if only is not None and k not in only:
            continue
        t = time.perf_counter()
        engine.validate([2], SamplingParams(constraint=ConstraintSpec("json_schema", schema)))
        compile_ms = (time.perf_counter() - t) * 1e3
        requests = []
        for j in range(per_schema):
            prompt = tok.encode(tok.apply_chat_template(
                [{"role": "user", "content": PROMPTS[j % len(PROMPTS)]}]),
                add_special_tokens=False)
            for temperature in (0.0, 1.0):
                requests.append((prompt, SamplingParams(
                    max_tokens=160, temperature=temperature, seed=j,
                    constraint=ConstraintSpec("json_schema", schema))))
        texts, _ = run(engine, requests)
        ok = 0
        for text in texts:
            try:
                jsonschema.validate(json.loads(text), schema)
                ok += 1
            except (ValueError, jsonschema.ValidationError) as exc:
                print(f"  schema {k}: INVALID {text[:80]!r}: {exc}"[:200])
        valid, total = valid + ok, total + len(texts)
        cut = run.finishes.count("length")
        print(f"schema {k}: {ok}/{len(texts)} valid, {cut} cut by max_tokens, compile "
              f"{compile_ms:.1f} ms", flush=True)
    print(f"validity: {valid}/{total} outputs parse and validate")


class MatcherTimer:
    """Wraps the matcher's per-step methods to add up the time spent in them (bench only)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._saved = (matcher.GrammarConstraint.allowed_tokens, matcher.GrammarConstraint.accept)

    def __enter__(self) -> MatcherTimer:
        allowed, accept = self._saved

        def timed(fn):
            def wrapper(*args):
                t = time.perf_counter()
                try:
                    return fn(*args)
                finally:
                    self.seconds += time.perf_counter() - t
            return wrapper

        matcher.GrammarConstraint.allowed_tokens = timed(allowed)
        matcher.GrammarConstraint.accept = timed(accept)
        return self

    def __exit__(self, *exc) -> None:
        matcher.GrammarConstraint.allowed_tokens, matcher.GrammarConstraint.accept = self._saved


def overhead(engine, tokens: int = 64, repeats: int = 3) -> None:
    tok = engine.tokenizer
    prompt = tok.encode(tok.apply_chat_template([{"role": "user", "content": "Tell a story."}]),
                        add_special_tokens=False)
    # minLength: the constrained streams stay in the string for the whole run, as the free ones
    schema = obj({"story": {"type": "string", "minLength": 1000, "maxLength": 4000}})
    free = SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True)
    constrained = SamplingParams(max_tokens=tokens, temperature=0.0,
                                 constraint=ConstraintSpec("json_schema", schema))

    def rate(times: list[float]) -> float:
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0

    run(engine, [(prompt, free)] * 2 + [(prompt, constrained)])  # warm-up, tokenizer table
    rates_a, rates_b, shares = [], [], []
    for r in range(repeats):
        _, times_a = run(engine, [(prompt, free)] * 16)
        with MatcherTimer() as timer:
            start = time.perf_counter()
            _, times_b = run(engine, [(prompt, free)] * 8 + [(prompt, constrained)] * 8)
            wall = time.perf_counter() - start
        a = sum(rate(t) for t in times_a[:8]) / 8
        b = sum(rate(t) for t in times_b[:8]) / 8
        lengths = sorted({len(t) for t in times_b[8:]})
        rates_a.append(a)
        rates_b.append(b)
        shares.append(timer.seconds / wall)
        print(f"  pair {r}: free streams {a:.2f} tok/s each (16 free) vs {b:.2f} (8 free + 8 "
              f"constrained, constrained lengths {lengths}): slowdown {100 * (1 - b / a):.1f}%; "
              f"matchers {1e3 * timer.seconds / tokens:.2f} ms/step = {100 * shares[-1]:.1f}% "
              f"of the run", flush=True)
    a, b = statistics.median(rates_a), statistics.median(rates_b)
    pairs = ", ".join(f"{100 * (1 - y / x):.1f}%" for x, y in zip(rates_a, rates_b, strict=True))
    print(f"overhead: median free-stream rate {a:.2f} vs {b:.2f} tok/s: slowdown "
          f"{100 * (1 - b / a):.1f}% (pairs: {pairs}); "
          f"matchers {100 * statistics.median(shares):.1f}% of the mixed runs' time")


def sampler_cost(engine, iters: int = 30) -> None:
    """The sampler alone on 16 rows of random logits whose maximum spells a story: all free
    vs 8 JSON-constrained (real matchers inside a string), median ms per call. On a shared
    machine this isolates what constraints add to a step from the load swings that dominate
    ``--overhead``."""
    import torch

    from forge_kernel.engine.sampler import SamplingRow, sample

    tok, vocab = engine.tokenizer, engine.vocab_size
    spec = ConstraintSpec("json_schema", obj({"story": {"type": "string", "minLength": 1000,
                                                        "maxLength": 4000}}))
    constrained = SamplingParams(max_tokens=64, temperature=0.0, constraint=spec)
    engine.validate([2], constrained)
    free = SamplingParams(max_tokens=64, temperature=0.0)
    prefix = tok.encode('{"story": "', add_special_tokens=False)
    text = tok.encode("Once upon a time there was a girl who lived in a small village near a "
                      "dark forest, and every morning she walked", add_special_tokens=False)
    logits = torch.randn(16, vocab, generator=torch.Generator().manual_seed(0))
    eos = frozenset(tok.eos_ids)
    medians = {}
    for k in (0, 8):
        rows = []
        for i in range(16):
            matcher = spec.compiled.new_constraint() if i >= 16 - k else None
            for t in prefix if matcher else ():
                matcher.accept(t)
            rows.append(SamplingRow(constrained if matcher else free, [2], [], None, eos,
                                    matcher))
        times = []
        for n in range(iters):
            step = logits.clone()
            step[:, text[n % len(text)]] += 100.0  # the model "writes" plain text
            start = time.perf_counter()
            sample(step, rows)
            times.append(time.perf_counter() - start)
        medians[k] = statistics.median(times)
    print(f"sampler, 16 rows x {vocab} logits: {1e3 * medians[0]:.1f} ms all free, "
          f"{1e3 * medians[8]:.1f} ms with 8 constrained (+{1e3 * (medians[8] - medians[0]):.1f}"
          f" ms per step)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--validity", action="store_true")
    ap.add_argument("--overhead", action="store_true")
    ap.add_argument("--per-schema", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=64, help="--overhead: tokens per stream")
    ap.add_argument("--schemas", default=None, help="--validity: only these (e.g. 3,4,6)")
    ap.add_argument("--overhead-first", action="store_true")
    ap.add_argument("--sampler", action="store_true", help="the sampler's cost alone")
    args = ap.parse_args()
    engine = build_engine()
    only = [int(k) for k in args.schemas.split(",")] if args.schemas else None
    if args.sampler:
        sampler_cost(engine)
    if args.overhead and args.overhead_first:
        overhead(engine, tokens=args.tokens, repeats=args.repeats)
    if args.validity:
        validity(engine, args.per_schema, only)
    if args.overhead and not args.overhead_first:
        overhead(engine, tokens=args.tokens, repeats=args.repeats)


if __name__ == "__main__":
    main()
