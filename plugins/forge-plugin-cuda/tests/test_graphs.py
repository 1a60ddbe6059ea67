"""CUDA-graph bucketing and padding, on CPU: the runner's eager mode runs the step on the same
padded static buffers a captured graph would read, so padded results must equal the unpadded
step row for row, and padding rows must touch only the scratch block."""

from __future__ import annotations

import pytest
import torch
from forge_plugin_cuda.graphs import (
    DecodeGraphRunner,
    DecodeInputs,
    StaticDecodeBuffers,
    bucket_for,
    capture_sizes,
)
from forge_plugin_cuda.torch_attention import decode_attention

NB, BS, KV, H, D, V = 12, 4, 2, 4, 8, 50  # blocks (+1 scratch), block size, heads, vocab


def test_capture_sizes():
    assert capture_sizes(1) == [1]
    assert capture_sizes(3) == [1, 2, 3]
    assert capture_sizes(20) == [1, 2, 4, 8, 16, 20]
    assert capture_sizes(64)[-3:] == [48, 56, 64]
    assert capture_sizes(10, step=4) == [1, 2, 4, 8, 10]
    with pytest.raises(ValueError, match="positive integer"):
        capture_sizes(0)


def test_bucket_for():
    sizes = capture_sizes(20)
    assert [bucket_for(n, sizes) for n in (1, 2, 3, 5, 8, 9, 17, 20)] == \
        [1, 2, 4, 8, 8, 16, 20, 20]
    assert bucket_for(21, sizes) is None
    with pytest.raises(ValueError, match="at least one row"):
        bucket_for(0, sizes)


class ToyDecoder:
    """One attention layer over a paged cache: capturable (device work only)."""

    def __init__(self, gen):
        self.embed = torch.randn(V, H * D, generator=gen)
        self.wk = torch.randn(KV * D, H * D, generator=gen) * 0.1
        self.wv = torch.randn(KV * D, H * D, generator=gen) * 0.1
        self.k = torch.randn(NB + 1, BS, KV, D, generator=gen)
        self.v = torch.randn(NB + 1, BS, KV, D, generator=gen)

    def step(self, x: DecodeInputs) -> torch.Tensor:
        h = self.embed[x.token_ids] + x.positions[:, None].float() * 0.01  # [n, H*D]
        self.k.view(-1, KV, D).index_copy_(0, x.slots, (h @ self.wk.T).view(-1, KV, D))
        self.v.view(-1, KV, D).index_copy_(0, x.slots, (h @ self.wv.T).view(-1, KV, D))
        return decode_attention(h.view(-1, H, D), self.k, self.v, x.block_tables, x.seq_lens,
                                scale=D ** -0.5)


def _batch(n, gen):
    lens = torch.randint(1, 3 * BS, (n,), generator=gen)
    tables = torch.zeros(n, 3, dtype=torch.long)
    blocks = torch.randperm(NB, generator=gen)  # real blocks only; sequences share none...
    for i in range(n):  # ...beyond what 12 blocks allow: reuse is fine, rows are independent
        tables[i] = blocks[(3 * i) % NB:(3 * i) % NB + 3] if (3 * i) % NB + 3 <= NB else \
            blocks[:3]
    pos = lens - 1
    slots = tables[torch.arange(n), pos // BS] * BS + pos % BS
    return DecodeInputs(torch.randint(0, V, (n,), generator=gen), pos, slots, tables, lens)


@pytest.mark.parametrize("n", [1, 3, 5, 8])
def test_padded_bucket_rows_equal_unpadded_step(n):
    gen = torch.Generator().manual_seed(n)
    model = ToyDecoder(gen)
    inputs = _batch(n, gen)
    before_k = model.k.clone()
    want = model.step(inputs)
    after_k = model.k.clone()
    model.k.copy_(before_k)  # same starting cache for the padded run
    sizes = capture_sizes(8)
    buffers = StaticDecodeBuffers(8, 5, scratch_block=NB, block_size=BS, device="cpu")
    runner = DecodeGraphRunner(model.step, buffers, sizes, use_graphs=False)
    got = runner.run(inputs)
    assert got.shape[0] == n
    torch.testing.assert_close(got, want)
    # Padding wrote only the scratch block; every real block is as the unpadded step left it.
    torch.testing.assert_close(model.k[:NB], after_k[:NB])
    if bucket_for(n, sizes) > n:
        assert not torch.equal(model.k[NB], before_k[NB])


def test_static_buffer_layout_and_padding():
    buffers = StaticDecodeBuffers(4, 3, scratch_block=9, block_size=4, device="cpu")
    inputs = DecodeInputs(torch.tensor([5, 6]), torch.tensor([2, 7]), torch.tensor([10, 19]),
                          torch.tensor([[2, 0], [3, 4]]), torch.tensor([3, 8]))
    buffers.load(inputs, 4)
    v = buffers.views(4)
    assert v.token_ids.tolist() == [5, 6, 0, 0] and v.positions.tolist() == [2, 7, 0, 0]
    assert v.slots.tolist() == [10, 19, 36, 36] and v.seq_lens.tolist() == [3, 8, 1, 1]
    assert v.block_tables.tolist() == [[2, 0, 0], [3, 4, 0], [9, 9, 9], [9, 9, 9]]
    ptr = buffers.packed.data_ptr()
    buffers.load(inputs, 2)  # a smaller bucket reuses the same memory
    assert buffers.packed.data_ptr() == ptr
    with pytest.raises(ValueError, match="exceed the captured 3"):
        buffers.load(DecodeInputs(*(t[:1] for t in (inputs.token_ids, inputs.positions,
                                                     inputs.slots)),
                                  torch.zeros(1, 4, dtype=torch.long), inputs.seq_lens[:1]), 1)


def test_batches_past_the_largest_bucket_run_eagerly():
    gen = torch.Generator().manual_seed(9)
    model = ToyDecoder(gen)
    inputs = _batch(6, gen)
    runner = DecodeGraphRunner(model.step, StaticDecodeBuffers(4, 3, NB, BS, "cpu"),
                               capture_sizes(4), use_graphs=False)
    assert runner.run(inputs).shape[0] == 6 and runner.eager_fallbacks == 1


def test_capture_refuses_cpu_buffers():
    runner = DecodeGraphRunner(lambda x: x.token_ids, StaticDecodeBuffers(2, 1, 0, 1, "cpu"),
                               [1, 2], use_graphs=True)
    with pytest.raises(RuntimeError, match="need CUDA buffers"):
        runner.capture()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_replay_matches_eager_on_gpu():
    gen = torch.Generator().manual_seed(4)
    model = ToyDecoder(gen)
    for name in ("embed", "wk", "wv", "k", "v"):
        setattr(model, name, getattr(model, name).cuda())
    inputs = _batch(3, gen)
    inputs = DecodeInputs(*(t.cuda() for t in (inputs.token_ids, inputs.positions,
                                               inputs.slots, inputs.block_tables,
                                               inputs.seq_lens)))
    start = model.k.clone()
    want = model.step(inputs)
    model.k.copy_(start)
    runner = DecodeGraphRunner(model.step, StaticDecodeBuffers(8, 3, NB, BS, "cuda"),
                               capture_sizes(8), use_graphs=True)
    runner.capture()
    model.k.copy_(start)
    torch.testing.assert_close(runner.run(inputs), want)
    assert runner.replays == 1
