"""RAG benchmark: index a 1,000-page PDF, then query latency (p50/p95), and the vector index
alone at larger sizes (sqlite-vec vs a numpy brute-force baseline).

    python benchmarks/bench_rag.py [--pages 1000] [--queries 50] [--index-sizes 10000,50000]

Writes JSON to stdout (progress to stderr). Each page holds ~120 words of seeded
pseudo-English (one chunk per page at the default 200-token chunks), so the numbers measure
the pipeline (pypdf extraction, tokenisation, MiniLM on CPU, SQLite inserts), not content.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("pump valve pressure motor seal filter water sensor cable switch bar hour clean "
         "replace check start stop error code manual warranty housing impeller gasket strainer "
         "flow level float cover noise heat cool frost gravel brass plug ceramic electrical "
         "months years service inspect drain tank pipe connect install").split()


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def write_pdf(path: Path, pages: int, rng: random.Random) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=10)
    for number in range(pages):
        pdf.add_page()
        words = [rng.choice(WORDS) for _ in range(120)]
        pdf.multi_cell(0, 5, f"Section {number + 1}. " + " ".join(words) + ".")
    pdf.output(str(path))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def bench_pipeline(pages: int, queries: int, workdir: Path) -> dict:
    from forge_plugin_rag.chunking import chunk_blocks
    from forge_plugin_rag.embedder import shared_embedder
    from forge_plugin_rag.loaders import load_document
    from forge_plugin_rag.pipeline import RAGPipeline

    rng = random.Random(0)
    pdf = workdir / "bench.pdf"
    t = time.perf_counter()
    write_pdf(pdf, pages, rng)
    log(f"wrote {pages}-page PDF ({pdf.stat().st_size} bytes) in {time.perf_counter() - t:.1f}s")
    t = time.perf_counter()
    embedder = shared_embedder()
    load_s = time.perf_counter() - t

    class Timed:  # the real embedder, timing what add_document spends embedding
        name, dimensions, seconds = embedder.name, embedder.dimensions, 0.0

        def offsets(self, text):
            return embedder.offsets(text)

        def embed(self, texts):
            t = time.perf_counter()
            try:
                return embedder.embed(texts)
            finally:
                self.seconds += time.perf_counter() - t

    timed = Timed()
    rag = RAGPipeline("bench", home=workdir, embedder=timed)
    t = time.perf_counter()
    result = rag.add_document(pdf)
    total_s = time.perf_counter() - t
    embed_s = timed.seconds
    rest_s = total_s - embed_s  # hashing, PDF parsing, chunking, SQLite
    # again on their own (warm), to split rest_s
    t = time.perf_counter()
    doc = load_document(pdf)
    parse_s = time.perf_counter() - t
    t = time.perf_counter()
    chunk_blocks(doc.blocks, embedder.offsets)
    chunk_s = time.perf_counter() - t

    log(f"add_document: {total_s:.1f}s (embed {embed_s:.1f}s, rest {rest_s:.1f}s of which "
        f"parse {parse_s:.1f}s, chunk {chunk_s:.1f}s; {result.document.chunks} chunks)")
    t = time.perf_counter()
    unchanged = rag.add_document(pdf)
    unchanged_s = time.perf_counter() - t
    log(f"unchanged re-add {unchanged_s:.2f}s ({unchanged.status})")

    questions = [" ".join(rng.choice(WORDS) for _ in range(8)) + "?" for _ in range(queries)]
    rag.search(questions[0])  # warm-up
    latencies = []
    for question in questions:
        t = time.perf_counter()
        rag.search(question, k=5)
        latencies.append((time.perf_counter() - t) * 1000)
    return {"pages": pages, "chunks": result.document.chunks, "pdf_bytes": pdf.stat().st_size,
            "embedder_load_s": round(load_s, 2), "parse_s": round(parse_s, 2),
            "chunk_s": round(chunk_s, 2), "embed_s": round(embed_s, 2),
            "not_embedding_s": round(rest_s, 2), "add_document_s": round(total_s, 2),
            "pages_per_s": round(pages / total_s, 2),
            "unchanged_readd_s": round(unchanged_s, 3),
            "query_ms_p50": round(statistics.median(latencies), 2),
            "query_ms_p95": round(percentile(latencies, 0.95), 2), "queries": queries}


def bench_index(sizes: list[int], workdir: Path, repeats: int = 20) -> list[dict]:
    """Exact top-5 search over random unit vectors: sqlite-vec vec0 vs numpy matmul."""
    import apsw
    import numpy as np
    import sqlite_vec

    rows = []
    rng = np.random.default_rng(0)
    for n in sizes:
        data = rng.standard_normal((n, 384)).astype(np.float32)
        data /= np.linalg.norm(data, axis=1, keepdims=True)
        db = apsw.Connection(str(workdir / f"index-{n}.db"))
        db.enable_load_extension(True)
        db.load_extension(sqlite_vec.loadable_path())
        db.execute("CREATE VIRTUAL TABLE v USING vec0(embedding float[384] "
                   "distance_metric=cosine)")
        t = time.perf_counter()
        with db:
            db.executemany("INSERT INTO v (rowid, embedding) VALUES (?, ?)",
                           ((i + 1, data[i].tobytes()) for i in range(n)))
        insert_s = time.perf_counter() - t
        queries = data[rng.integers(0, n, repeats)]
        vec_ms, np_ms = [], []
        for q in queries:
            t = time.perf_counter()
            got = [r[0] for r in db.execute("SELECT rowid FROM v WHERE embedding MATCH ? AND "
                                            "k = 5 ORDER BY distance", (q.tobytes(),))]
            vec_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            want = np.argsort(-(data @ q))[:5] + 1
            np_ms.append((time.perf_counter() - t) * 1000)
            assert got[0] == want[0]
        db.close()
        rows.append({"vectors": n, "sqlite_vec_insert_s": round(insert_s, 2),
                     "sqlite_vec_query_ms_p50": round(statistics.median(vec_ms), 2),
                     "numpy_query_ms_p50": round(statistics.median(np_ms), 2)})
        log(rows[-1])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--index-sizes", default="10000,50000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        os.environ["FORGE_HOME"] = str(workdir)
        out = {"cpu_count": os.cpu_count(), "torch_threads": None}
        import torch

        out["torch_threads"] = torch.get_num_threads()
        out["pipeline"] = bench_pipeline(args.pages, args.queries, workdir)
        sizes = [int(s) for s in args.index_sizes.split(",") if s]
        out["index"] = bench_index(sizes, workdir)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
