"""Device sampling (run here on CPU tensors): greedy and fallback rows equal the kernel
sampler's, sampled rows follow the filtered distribution and are reproducible per seed."""

from __future__ import annotations

import torch
from forge_plugin_cuda.sampling import sample_on_device

from forge_kernel.engine.sampler import SamplingRow, sample
from forge_kernel.engine.types import SamplingParams


def _row(seed=None, **params):
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    return SamplingRow(SamplingParams(**params), [1, 2], [3], gen)


def test_greedy_rows_equal_kernel_sampler():
    logits = torch.randn(6, 300, generator=torch.Generator().manual_seed(0))
    rows = [_row(temperature=0.0) for _ in range(6)]
    assert sample_on_device(logits, rows) == sample(logits, rows)


def test_rows_needing_processing_use_the_kernel_sampler():
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(1))
    make = [lambda: _row(temperature=0.0, repetition_penalty=1.5),
            lambda: _row(seed=4, temperature=0.7, logprobs=2),
            lambda: _row(temperature=0.0, logit_bias={7: 100.0})]
    got = sample_on_device(logits, [m() for m in make])
    want = sample(logits, [m() for m in make])
    assert got == want
    assert got[2][0] == 7 and got[1][1] is not None and len(got[1][1].top) == 2


def test_top_k_one_is_greedy_and_mixed_batches_keep_row_order():
    logits = torch.randn(4, 100, generator=torch.Generator().manual_seed(2))
    rows = [_row(seed=1, temperature=1.0, top_k=1), _row(temperature=0.0),
            _row(seed=2, temperature=0.5, top_k=1), _row(temperature=0.0, min_tokens=5)]
    tokens = [t for t, _ in sample_on_device(logits, rows)]
    assert tokens[:3] == logits[:3].argmax(-1).tolist()


def test_seeded_rows_are_reproducible():
    logits = torch.randn(2, 1000, generator=torch.Generator().manual_seed(3))
    runs = [[t for t, _ in sample_on_device(logits, [_row(seed=s, temperature=1.0)
                                                     for s in (11, 12)])] for _ in range(2)]
    assert runs[0] == runs[1]


def test_draws_follow_the_filtered_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0]])
    n = 4000
    rows = [_row(seed=s, temperature=0.8) for s in range(n)]
    tokens = torch.tensor([t for t, _ in sample_on_device(logits.expand(n, -1), rows)])
    freq = torch.bincount(tokens, minlength=6).float() / n
    torch.testing.assert_close(freq, torch.softmax(logits[0] / 0.8, -1), atol=0.03, rtol=0)
    # top-k 2: only the two best; top-p 0.5: only token 0 (p0 = 0.57 reaches it alone)
    rows = [_row(seed=s, temperature=1.0, top_k=2) for s in range(400)]
    assert set(t for t, _ in sample_on_device(logits.expand(400, -1), rows)) == {0, 1}
    rows = [_row(seed=s, temperature=1.0, top_p=0.5) for s in range(200)]
    assert set(t for t, _ in sample_on_device(logits.expand(200, -1), rows)) == {0}
    # min-p 0.3: tokens with p >= 0.3 * p_max: 0 (1.0), 1 (0.37); not 2 (0.22)
    rows = [_row(seed=s, temperature=1.0, min_p=0.3) for s in range(400)]
    assert set(t for t, _ in sample_on_device(logits.expand(400, -1), rows)) == {0, 1}
