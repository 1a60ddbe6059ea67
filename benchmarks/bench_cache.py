"""Response-cache benchmark: what a hit costs against generating the answer.

    python benchmarks/bench_cache.py [--tiers memory,disk,redis] [--entry-bytes 4096] \
        [--ops 2000] [--serve] [--requests 20] [--max-tokens 32] [--json out.json]

Part 1 (always): each tier alone, in-process — ``put`` and ``get`` latency of ``--ops``
entries of ``--entry-bytes`` (Redis: a redis-server this script starts on a free loopback
port, skipped if the binary is missing), plus semantic lookup (MiniLM embedding of one prompt)
when ``--semantic``.

Part 2 (``--serve``): a real ``forge serve`` of the default model with the memory tier; for
``--requests`` distinct greedy chat prompts it measures the first request (miss: the engine
generates ``--max-tokens``) and the repeat (hit), non-streaming, client-side wall time.

Numbers depend heavily on what else runs on the machine; report the conditions with them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "plugins" / "forge-plugin-cache"
                       / "tests"))


def _ms(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {"p50_ms": round(statistics.median(values) * 1e3, 4),
            "p99_ms": round(values[min(len(values) - 1, int(len(values) * 0.99))] * 1e3, 4)}


async def _tier_bench(tier, ops: int, size: int) -> dict:
    payload = os.urandom(size)
    keys = [f"{i:064x}" for i in range(ops)]
    puts, gets = [], []
    for key in keys:
        start = time.perf_counter()
        await tier.put(key, payload)
        puts.append(time.perf_counter() - start)
    for key in keys:
        start = time.perf_counter()
        data = await tier.get(key)
        gets.append(time.perf_counter() - start)
        assert data == payload, f"{tier.name}: lost an entry"
    await tier.close()
    return {"put": _ms(puts), "get": _ms(gets)}


def tiers_part(names: list[str], ops: int, size: int, semantic: bool) -> dict:
    from forge_plugin_cache.backends.disk import DiskBackend
    from forge_plugin_cache.backends.memory import MemoryBackend
    from forge_plugin_cache.backends.redis_tier import RedisBackend

    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            if name == "memory":
                tier = MemoryBackend(ops * size * 2)
            elif name == "disk":
                tier = DiskBackend(Path(tmp) / "disk", ops * size * 2)
            else:
                if shutil.which("redis-server") is None:
                    results[name] = "skipped: redis-server not installed"
                    continue
                from cache_redis import RedisServer  # the tests' loopback redis-server

                redis = RedisServer(Path(tmp)).start()
                try:
                    results[name] = asyncio.run(_tier_bench(RedisBackend(redis.url), ops, size))
                finally:
                    redis.stop()
                continue
            results[name] = asyncio.run(_tier_bench(tier, ops, size))
    if semantic:
        from forge_plugin_cache.semantic import MiniLMEmbedder

        started = time.perf_counter()
        embedder = MiniLMEmbedder()
        load = time.perf_counter() - started
        times = []
        for i in range(20):
            start = time.perf_counter()
            embedder.embed(f"user: question number {i} about the capital of France")
            times.append(time.perf_counter() - start)
        results["semantic_embed"] = {"load_s": round(load, 2), **_ms(times)}
    return results


def serve_part(requests: int, max_tokens: int) -> dict:
    import httpx

    from forge_kernel.testing.server import start_server

    home = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    env = {"FORGE_CACHE_ENABLED": "1", "FORGE_CACHE_BACKENDS": "memory"}
    server = start_server(["--threads", "2", "--max-model-len", "512"], home, env=env)
    miss, hit = [], []
    try:
        with httpx.Client(base_url=server.base_url, timeout=300) as client:
            for i in range(requests):
                body = {"messages": [{"role": "user", "content": f"Write a story number {i}."}],
                        "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
                for bucket, expected in ((miss, "miss"), (hit, "hit")):
                    start = time.perf_counter()
                    response = client.post("/chat/completions", json=body)
                    bucket.append(time.perf_counter() - start)
                    assert response.headers["x-forge-cache"] == expected, response.headers
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
    return {"requests": requests, "max_tokens": max_tokens, "miss": _ms(miss), "hit": _ms(hit),
            "speedup_p50": round(statistics.median(miss) / statistics.median(hit), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiers", default="memory,disk,redis")
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--entry-bytes", type=int, default=4096)
    parser.add_argument("--semantic", action="store_true")
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report = {"entry_bytes": args.entry_bytes, "ops": args.ops, "cpus": os.cpu_count(),
              "tiers": tiers_part(args.tiers.split(","), args.ops, args.entry_bytes,
                                  args.semantic)}
    if args.serve:
        report["serve"] = serve_part(args.requests, args.max_tokens)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
