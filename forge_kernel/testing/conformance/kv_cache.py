"""``KVCacheConformance``: the contract every :class:`~forge_kernel.interfaces.kv_cache.KVCache`
must meet, as a pytest class to subclass.

Usage in a plugin's tests::

    from forge_kernel.testing.conformance.kv_cache import KVCacheConformance

    class TestMyCache(KVCacheConformance):
        def make_cache(self, spec, config):
            return MyCache(spec, config)

Checked: token accounting (capacity = ``num_blocks * block_size`` when ``num_blocks`` is set,
``KVCacheFull`` beyond it, ``max_model_len``, idempotent ``free``), and :meth:`attend` against a
float64 reference (:func:`reference_attention`) for whole prompts, chunked prefill, decode,
mixed batches, GQA, sliding window and soft-capping (every step through :meth:`begin_step`),
and the declared contracts: :attr:`supports_fork` (fork works, or raises
``NotImplementedError``), :attr:`supports_prefix_caching` (a committed prefix is found and
attends correctly, or ``match_prefix`` always returns 0) and :attr:`supports_truncate`
(rolled-back positions are rewritten without changing what forks and prefix hits see, or
``NotImplementedError``).
"""

from __future__ import annotations

import pytest

from forge_kernel.errors import KVCacheFull
from forge_kernel.interfaces.kv_cache import KVCacheConfig, KVCacheSpec

torch = pytest.importorskip("torch")


def reference_attention(q, keys, values, first_pos: int, *, scale: float,
                        sliding_window: int | None = None, logit_softcap: float | None = None):
    """Obvious float64 attention: queries ``q [n, H, D]`` at ``first_pos ..`` over one
    sequence's keys/values ``[S, KV, D]`` at positions ``0 .. S-1``. Returns ``[n, H, D]``."""
    n, heads, _ = q.shape
    groups = heads // keys.shape[1]
    out = torch.zeros(q.shape, dtype=torch.float64)
    for i in range(n):
        p = first_pos + i
        lo = 0 if sliding_window is None else max(0, p - sliding_window + 1)
        for h in range(heads):
            k = keys[lo:p + 1, h // groups].double()  # [S', D]
            s = (k @ q[i, h].double()) * scale
            if logit_softcap is not None:
                s = torch.tanh(s / logit_softcap) * logit_softcap
            out[i, h] = torch.softmax(s, 0) @ values[lo:p + 1, h // groups].double()
    return out


class _Driver:
    """Runs steps against a cache while keeping the true keys/values of every sequence."""

    def __init__(self, cache, spec: KVCacheSpec, heads: int, seed: int = 0) -> None:
        self.cache, self.spec, self.heads = cache, spec, heads
        self.gen = torch.Generator().manual_seed(seed)
        self.keys: dict[int, list] = {}  # seq -> per layer [S, KV, D]
        self.values: dict[int, list] = {}
        self.tokens: dict[int, list[int]] = {}
        self.salt = 0
        """Mixed into new token ids: rewritten positions after a truncation differ."""

    def _rand(self, *shape):
        return torch.randn(*shape, generator=self.gen, dtype=torch.float32)

    def step(self, chunks: list[tuple[int, int]], *, atol: float, scale: float = 0.3,
             sliding_window: int | None = None, logit_softcap: float | None = None) -> None:
        """Compute ``(seq_id, num_tokens)`` chunks through ``attend`` and check each layer."""
        from forge_kernel.interfaces.batch import ForwardBatch, SequenceChunk

        spec = self.spec
        ids, pos, batch_chunks, starts = [], [], [], []
        for seq_id, n in chunks:
            start = len(self.tokens.setdefault(seq_id, []))
            self.cache.allocate(seq_id, start + n)
            new = [(seq_id * 7919 + start + j + self.salt) % 1000 for j in range(n)]
            ids += new
            pos += range(start, start + n)
            batch_chunks.append(SequenceChunk(seq_id, start, n))
            starts.append(start)
        batch = ForwardBatch(torch.tensor(ids), torch.tensor(pos), batch_chunks)
        self.cache.begin_step(batch)
        T = len(ids)
        for layer in range(spec.num_layers):
            q = self._rand(T, self.heads, spec.head_dim)
            k = self._rand(T, spec.num_kv_heads, spec.head_dim)
            v = self._rand(T, spec.num_kv_heads, spec.head_dim)
            out = self.cache.attend(layer, q, k, v, batch, scale=scale,
                                    sliding_window=sliding_window, logit_softcap=logit_softcap)
            assert out.shape == q.shape and out.dtype == q.dtype
            row = 0
            for (seq_id, n), start in zip(chunks, starts, strict=True):
                ks = self.keys.setdefault(seq_id, [None] * spec.num_layers)
                vs = self.values.setdefault(seq_id, [None] * spec.num_layers)
                prev_k = ks[layer] if ks[layer] is not None else k[:0]
                prev_v = vs[layer] if vs[layer] is not None else v[:0]
                ks[layer] = torch.cat([prev_k[:start], k[row:row + n]])
                vs[layer] = torch.cat([prev_v[:start], v[row:row + n]])
                ref = reference_attention(q[row:row + n], ks[layer], vs[layer], start,
                                          scale=scale, sliding_window=sliding_window,
                                          logit_softcap=logit_softcap)
                err = (out[row:row + n].double() - ref).abs().max().item()
                assert err <= atol, f"layer {layer} seq {seq_id}: max error {err:.3g}"
                row += n
        row = 0
        for seq_id, n in chunks:
            self.tokens[seq_id] += ids[row:row + n]
            row += n
            self.cache.commit(seq_id, self.tokens[seq_id], len(self.tokens[seq_id]))

    def truncate(self, seq_id: int, num_tokens: int) -> None:
        self.cache.truncate(seq_id, num_tokens)
        self.tokens[seq_id] = self.tokens[seq_id][:num_tokens]
        self.keys[seq_id] = [t[:num_tokens] for t in self.keys[seq_id]]
        self.values[seq_id] = [t[:num_tokens] for t in self.values[seq_id]]
        self.salt += 1

    def copy_seq(self, source: int, target: int, num_tokens: int) -> None:
        """Expect ``target`` to see ``source``'s first ``num_tokens`` (a fork or prefix hit)."""
        self.tokens[target] = self.tokens[source][:num_tokens]
        self.keys[target] = [t[:num_tokens].clone() for t in self.keys[source]]
        self.values[target] = [t[:num_tokens].clone() for t in self.values[source]]

    def fork(self, parent: int, child: int) -> None:
        self.cache.fork(parent, child)
        self.tokens[child] = list(self.tokens[parent])
        self.keys[child] = [t.clone() for t in self.keys[parent]]
        self.values[child] = [t.clone() for t in self.values[parent]]


class KVCacheConformance:
    """Subclass and implement :meth:`make_cache`; tune ``atol`` / ``block_size``."""

    atol = 2e-5
    block_size = 4

    def make_cache(self, spec: KVCacheSpec, config: KVCacheConfig):
        """Return a fresh cache of the implementation under test."""
        raise NotImplementedError("subclasses implement make_cache(spec, config)")

    def spec(self, *, kv_heads: int = 2, layers: int = 2, head_dim: int = 8,
             max_model_len: int = 128) -> KVCacheSpec:
        return KVCacheSpec(num_layers=layers, num_kv_heads=kv_heads, head_dim=head_dim,
                           dtype=torch.float32, max_model_len=max_model_len)

    def cache(self, num_blocks: int = 32, **spec_kw):
        return self.make_cache(self.spec(**spec_kw),
                               KVCacheConfig(block_size=self.block_size, num_blocks=num_blocks))

    def driver(self, heads: int = 4, capacity: int = 128, **spec_kw) -> _Driver:
        """A checking driver over a fresh cache of about ``capacity`` tokens."""
        spec = self.spec(**spec_kw)
        cache = self.make_cache(spec, KVCacheConfig(block_size=self.block_size,
                                                    num_blocks=-(-capacity // self.block_size)))
        return _Driver(cache, spec, heads)

    # -- accounting -------------------------------------------------------------------------
    def test_capacity_from_num_blocks(self):
        cache = self.cache(num_blocks=8)
        assert cache.capacity_tokens() == 8 * self.block_size
        assert cache.free_tokens() == cache.capacity_tokens()
        assert cache.usage() == 0.0

    def test_capacity_from_memory_budget(self):
        spec = self.spec()
        budget = 64 * spec.bytes_per_token
        cache = self.make_cache(spec, KVCacheConfig(block_size=self.block_size,
                                                    num_blocks=None, memory_budget_bytes=budget))
        assert 0 < cache.capacity_tokens() <= 64

    def test_allocate_grow_and_free(self):
        cache = self.cache(num_blocks=8)
        cap = cache.capacity_tokens()
        assert cache.can_allocate(1, 5)
        cache.allocate(1, 5)
        cache.allocate(1, 3)  # shrinking requests are no-ops
        assert cache.free_tokens() <= cap - 5
        assert 0.0 < cache.usage() <= 1.0
        cache.allocate(2, cap - -(-5 // self.block_size) * self.block_size)
        assert not cache.can_allocate(3, cap)
        with pytest.raises(KVCacheFull):
            cache.allocate(3, cap)
        cache.free(1)
        cache.free(2)
        cache.free(2)  # idempotent
        cache.free(12345)  # unknown ids ignored
        assert cache.free_tokens() == cap
        assert cache.usage() == 0.0

    def test_whole_cache_fits_one_sequence(self):
        cache = self.cache(num_blocks=4)
        assert cache.can_allocate(1, cache.capacity_tokens())
        cache.allocate(1, cache.capacity_tokens())
        assert not cache.can_allocate(2, 1)
        with pytest.raises(KVCacheFull):
            cache.allocate(2, 1)

    def test_max_model_len(self):
        cache = self.cache(num_blocks=64, max_model_len=20)
        assert cache.can_allocate(1, 20)
        assert not cache.can_allocate(1, 21)
        with pytest.raises(KVCacheFull):
            cache.allocate(1, 21)

    # -- attention --------------------------------------------------------------------------
    def test_prefill_then_decode(self):
        d = self.driver()
        d.step([(1, 7)], atol=self.atol)
        for _ in range(6):
            d.step([(1, 1)], atol=self.atol)

    def test_chunked_prefill_matches(self):
        d = self.driver()
        for n in (3, 4, 5, 1, 2):
            d.step([(1, n)], atol=self.atol)

    def test_mixed_batch(self):
        d = self.driver()
        d.step([(1, 6), (2, 1)], atol=self.atol)
        d.step([(2, 9), (1, 1), (3, 4)], atol=self.atol)
        for _ in range(5):
            d.step([(3, 1), (1, 1), (2, 1)], atol=self.atol)
        d.step([(4, 11), (1, 1)], atol=self.atol)

    @pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 1), (6, 2)])
    def test_gqa(self, heads, kv_heads):
        d = self.driver(heads=heads, kv_heads=kv_heads)
        d.step([(1, 5), (2, 3)], atol=self.atol)
        for _ in range(3):
            d.step([(1, 1), (2, 1)], atol=self.atol)

    def test_sliding_window(self):
        d = self.driver()
        kw = dict(atol=self.atol, sliding_window=5)
        d.step([(1, 9)], **kw)
        d.step([(1, 6), (2, 3)], **kw)
        for _ in range(7):
            d.step([(1, 1), (2, 1)], **kw)

    def test_softcap(self):
        d = self.driver()
        kw = dict(atol=self.atol, logit_softcap=2.0, scale=2.0)
        d.step([(1, 6)], **kw)
        d.step([(1, 1), (2, 5)], **kw)
        d.step([(1, 1), (2, 1)], **kw)

    def test_free_then_reuse_space(self):
        d = self.driver(capacity=24)
        d.step([(1, 10)], atol=self.atol)
        d.cache.free(1)
        d.step([(2, 20)], atol=self.atol)
        d.step([(2, 1)], atol=self.atol)

    def test_attend_without_allocation_raises(self):
        from forge_kernel.interfaces.batch import ForwardBatch, SequenceChunk

        cache = self.cache()
        cache.allocate(1, 2)
        spec = self.spec()
        batch = ForwardBatch(torch.zeros(3, dtype=torch.long), torch.arange(3),
                             [SequenceChunk(1, 0, 3)])
        x = torch.zeros(3, spec.num_kv_heads, spec.head_dim)
        with pytest.raises(KVCacheFull):  # from begin_step or from attend
            cache.begin_step(batch)
            cache.attend(0, x, x, x, batch, scale=1.0)

    # -- declared contracts -----------------------------------------------------------------
    def test_declared_contracts_are_bools(self):
        cache = self.cache()
        assert isinstance(cache.supports_fork, bool)
        assert isinstance(cache.supports_prefix_caching, bool)
        if not cache.supports_fork:
            cache.allocate(1, 4)
            with pytest.raises(NotImplementedError):
                cache.fork(1, 2)

    def test_prefix_caching_as_declared(self):
        d = self.driver()
        d.step([(1, 3 * self.block_size + 1)], atol=self.atol)
        prompt = d.tokens[1] + [5]
        cached = d.cache.match_prefix(2, prompt)
        if not d.cache.supports_prefix_caching:
            assert cached == 0
            return
        assert 0 < cached < len(prompt)  # a hit always leaves a token to compute
        d.tokens[2] = prompt[:cached]
        d.keys[2] = [k[:cached].clone() for k in d.keys[1]]
        d.values[2] = [v[:cached].clone() for v in d.values[1]]
        d.step([(2, len(prompt) - cached), (1, 1)], atol=self.atol)
        d.step([(2, 1), (1, 1)], atol=self.atol)

    # -- fork (n > 1) -----------------------------------------------------------------------
    def test_fork_children_diverge(self):
        d = self.driver()
        if not d.cache.supports_fork:
            pytest.skip("the cache declares supports_fork = False")
        d.step([(1, 6)], atol=self.atol)
        d.fork(1, 2)
        d.fork(1, 3)
        for _ in range(4):
            d.step([(1, 1), (2, 1), (3, 1)], atol=self.atol)
        d.cache.free(1)
        d.step([(2, 1), (3, 2)], atol=self.atol)

    # -- truncate (speculative decoding rolls back rejected tokens) --------------------------
    def test_truncate_as_declared(self):
        d = self.driver()
        d.step([(1, 7)], atol=self.atol)
        if not d.cache.supports_truncate:
            with pytest.raises(NotImplementedError):
                d.cache.truncate(1, 3)
            return
        d.step([(1, 5), (2, 3)], atol=self.atol)  # 1 + 4 drafted tokens
        d.truncate(1, 9)  # two of them accepted
        d.step([(1, 3), (2, 1)], atol=self.atol)  # new tokens at the rolled-back positions
        for _ in range(3):
            d.step([(1, 1), (2, 1)], atol=self.atol)
        d.cache.truncate(1, 99)  # holds fewer: no-op
        d.cache.truncate(12345, 1)  # unknown: ignored
        d.step([(1, 1)], atol=self.atol)

    def test_truncate_frees_space(self):
        cache = self.cache(num_blocks=8)
        if not cache.supports_truncate:
            pytest.skip("the cache declares supports_truncate = False")
        cap = cache.capacity_tokens()
        cache.allocate(1, cap)
        assert not cache.can_allocate(2, self.block_size)
        cache.truncate(1, 1)
        assert cache.free_tokens() >= cap - self.block_size
        cache.allocate(2, cap - self.block_size)
        cache.allocate(1, self.block_size)  # regrowing the truncated sequence works

    @pytest.mark.parametrize("fork", [False, True])
    def test_truncate_keeps_prefix_hits_and_forks_intact(self, fork):
        d = self.driver()
        if not d.cache.supports_truncate or (fork and not d.cache.supports_fork):
            pytest.skip("the cache does not declare supports_truncate (and supports_fork)")
        bs = self.block_size
        d.step([(1, 3 * bs + 2)], atol=self.atol)  # full blocks committed (published)
        old = list(d.tokens[1])
        d.copy_seq(1, 9, len(old))  # what prefix hits and forks must keep seeing
        if fork:
            d.fork(1, 2)
        d.truncate(1, bs + 1)  # cuts into a published (or forked) block
        d.step([(1, 2 * bs)], atol=self.atol)  # rewrites it with other keys
        if fork:
            d.step([(2, 1), (1, 1)], atol=self.atol)  # the fork still reads its own keys
        cached = d.cache.match_prefix(3, old + [5])
        if cached:
            d.copy_seq(9, 3, cached)
            d.step([(3, 1), (1, 1)], atol=self.atol)
