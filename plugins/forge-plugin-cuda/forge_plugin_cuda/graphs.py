"""CUDA graphs for decode steps: batch-size buckets, padding, capture and replay.

A decode step launches a few hundred small kernels; on a GPU their launch overhead, not the
arithmetic, bounds small batches. A CUDA graph replays a captured launch sequence for the cost
of one launch, but only on the **same buffers with the same shapes**. So:

* decode batches are rounded up to a few **bucket** sizes (:func:`capture_sizes`: 1, 2, 4, 8,
  then every 8 up to the largest batch), one graph per bucket;
* inputs are copied into **static buffers** (:class:`StaticDecodeBuffers`) sized for the largest
  bucket; each graph reads the first ``bucket`` rows;
* the rows past the real batch are **padding**: token 0 at position 0, writing its key/value
  into the cache's scratch block (never part of a sequence) and attending over that block only,
  so padding can neither corrupt nor read another sequence's cache. Their outputs are dropped.

Everything except capture/replay itself runs on any device: with ``use_graphs=False`` the
runner calls the step eagerly on the same padded static buffers, which is how the bucketing and
padding are tested on CPU (the replay on a GPU must then give the same rows).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


def capture_sizes(max_batch_size: int, step: int = 8) -> list[int]:
    """Bucket sizes: 1, 2, 4, then multiples of ``step`` up to ``max_batch_size`` (always
    included), e.g. 20 -> ``[1, 2, 4, 8, 16, 20]``."""
    if not isinstance(max_batch_size, int) or max_batch_size < 1:
        raise ValueError(f"max_batch_size must be a positive integer, got {max_batch_size!r}")
    sizes = {s for s in (1, 2, 4) if s <= max_batch_size}
    sizes.update(range(step, max_batch_size + 1, step))
    sizes.add(max_batch_size)
    return sorted(sizes)


def bucket_for(n: int, sizes: list[int]) -> int | None:
    """The smallest bucket holding ``n`` rows (``sizes`` sorted), ``None`` past the largest."""
    if n < 1:
        raise ValueError(f"a decode batch has at least one row, got {n}")
    i = bisect.bisect_left(sizes, n)
    return sizes[i] if i < len(sizes) else None


@dataclass(slots=True)
class DecodeInputs:
    """One decode step, ``n`` rows: what the captured step reads."""

    token_ids: torch.Tensor  # [n] int64
    positions: torch.Tensor  # [n] int64 (= seq_lens - 1)
    slots: torch.Tensor  # [n] int64 cache row each token's key/value is written to
    block_tables: torch.Tensor  # [n, M] int64
    seq_lens: torch.Tensor  # [n] int64, including the new token

    def __len__(self) -> int:
        return int(self.token_ids.shape[0])


class StaticDecodeBuffers:
    """Fixed-address input buffers for up to ``max_batch`` rows of ``max_blocks`` blocks."""

    def __init__(self, max_batch: int, max_blocks: int, scratch_block: int, block_size: int,
                 device: str | torch.device) -> None:
        self.max_batch, self.max_blocks = max_batch, max_blocks
        self.scratch_block, self.block_size = scratch_block, block_size
        # One int64 tensor, so a step's inputs arrive in one host-to-device copy.
        self.width = 4 + max_blocks
        self.packed = torch.zeros(max_batch, self.width, dtype=torch.long, device=device)

    def views(self, rows: int) -> DecodeInputs:
        """The first ``rows`` rows of every buffer (what a bucket's graph was captured on)."""
        p = self.packed[:rows]
        return DecodeInputs(p[:, 0], p[:, 1], p[:, 2], p[:, 4:], p[:, 3])

    def host_rows(self, inputs: DecodeInputs, bucket: int) -> np.ndarray:
        """``inputs`` padded to ``bucket`` rows, in the packed layout (host memory)."""
        n = len(inputs)
        if n > bucket or bucket > self.max_batch:
            raise ValueError(f"{n} rows do not fit bucket {bucket} (max {self.max_batch})")
        width = int(inputs.block_tables.shape[1])
        if width > self.max_blocks:
            raise ValueError(f"block tables of {width} blocks exceed the captured "
                             f"{self.max_blocks}")
        host = np.zeros((bucket, self.width), dtype=np.int64)
        host[:n, 0] = inputs.token_ids.cpu().numpy()
        host[:n, 1] = inputs.positions.cpu().numpy()
        host[:n, 2] = inputs.slots.cpu().numpy()
        host[:n, 3] = inputs.seq_lens.cpu().numpy()
        host[:n, 4:4 + width] = inputs.block_tables.cpu().numpy()
        # Padding rows: token 0 at position 0, written to and read from the scratch block only.
        host[n:, 2] = self.scratch_block * self.block_size
        host[n:, 3] = 1
        host[n:, 4:] = self.scratch_block
        return host

    def load(self, inputs: DecodeInputs, bucket: int) -> None:
        """Copy ``inputs`` (padded to ``bucket``) into the buffers, in place."""
        host = torch.from_numpy(self.host_rows(inputs, bucket))
        self.packed[:bucket].copy_(host.to(self.packed.device))


StepFn = Callable[[DecodeInputs], torch.Tensor]
"""A decode step over static inputs returning ``[rows, ...]``; it must launch only device work
(no host reads of device values, no new host tensors) to be capturable."""


class DecodeGraphRunner:
    """Runs decode steps through per-bucket CUDA graphs (or eagerly on the same padded buffers
    when ``use_graphs`` is false). Batches larger than every bucket run eagerly, unpadded."""

    def __init__(self, step: StepFn, buffers: StaticDecodeBuffers, sizes: list[int], *,
                 use_graphs: bool) -> None:
        if max(sizes) > buffers.max_batch:
            raise ValueError(f"bucket {max(sizes)} exceeds the buffers' {buffers.max_batch} rows")
        self.step, self.buffers, self.sizes = step, buffers, sorted(sizes)
        self.use_graphs = use_graphs
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.replays = 0
        self.eager_fallbacks = 0

    def capture(self, warmup: int = 2) -> None:
        """Capture one graph per bucket, largest first so smaller ones reuse its memory pool."""
        if not self.use_graphs:
            return
        if self.buffers.packed.device.type != "cuda":
            raise RuntimeError(f"CUDA graphs need CUDA buffers, got {self.buffers.packed.device}")
        pool = None
        stream = torch.cuda.Stream()
        for size in reversed(self.sizes):
            views = self.buffers.views(size)
            self.buffers.load(_idle_rows(), size)  # all padding: safe to run while capturing
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):  # warm-up off the capture (lazy inits, autotune)
                for _ in range(warmup):
                    self.step(views)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                out = self.step(views)
            pool = graph.pool()
            self.graphs[size] = (graph, out)
        torch.cuda.synchronize()

    def run(self, inputs: DecodeInputs) -> torch.Tensor:
        """Outputs for the ``len(inputs)`` real rows (a view of a static buffer under graphs:
        consume or copy it before the next :meth:`run`)."""
        n = len(inputs)
        bucket = bucket_for(n, self.sizes)
        if bucket is None:
            self.eager_fallbacks += 1
            return self.step(inputs)
        self.buffers.load(inputs, bucket)
        if self.use_graphs:
            graph, out = self.graphs[bucket]
            graph.replay()
            self.replays += 1
            return out[:n]
        return self.step(self.buffers.views(bucket))[:n]


def _idle_rows() -> DecodeInputs:
    empty = torch.zeros(0, dtype=torch.long)
    return DecodeInputs(empty, empty, empty, torch.zeros(0, 0, dtype=torch.long), empty)
