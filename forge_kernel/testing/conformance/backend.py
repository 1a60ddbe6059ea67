"""``BackendConformance``: the contract every :class:`~forge_kernel.interfaces.backend.Backend`
must meet, as a pytest class to subclass.

Usage in a plugin's tests::

    from forge_kernel.testing.conformance.backend import BackendConformance

    class TestMyBackend(BackendConformance):
        qtypes = ("F32", "F16", "Q8_0", "Q4_K")   # the types you claim
        rtol = 1e-5                               # relative to the largest |reference| value

        @pytest.fixture(scope="class")
        @classmethod
        def backend(cls):
            return MyBackend(threads=1)

Each claimed qtype is checked on random tensors: ``linear``/``embedding``/``dense`` must agree
with ``WeightTensor.dequantize()`` within ``rtol`` (max abs error / max abs reference), return the
right shapes, the backend's ``compute_dtype`` (``dense``: float32) and device. Override
``real_weights`` (a fixture returning ``WeightTensor`` objects from a real model file) to check
those too.
"""

from __future__ import annotations

import pytest

from forge_kernel.testing.conformance.weights import ALL_QTYPES, random_weight

torch = pytest.importorskip("torch")
pytest.importorskip("gguf")


def _rel_err(got, ref) -> float:
    ref = ref.to(torch.float64)
    scale = ref.abs().max().clamp_min(1e-12)
    return float((got.to(torch.float64) - ref).abs().max() / scale)


class BackendConformance:
    """Subclass and provide a ``backend`` fixture; set ``qtypes`` and tolerances."""

    qtypes: tuple[str, ...] = ALL_QTYPES
    rtol: float = 1e-5
    """Linear/embedding tolerance: max |got - ref| / max |ref|."""
    token_counts: tuple[int, ...] = (1, 3, 17, 64)
    """Row counts of activations fed to linear ops (decode, small batch, prefill sizes)."""
    out_features: int = 96
    in_features: int = 512

    @pytest.fixture
    def backend(self):
        raise NotImplementedError("subclass BackendConformance and provide a `backend` fixture")

    @pytest.fixture
    def real_weights(self):
        """WeightTensors from a real model to check as well (override; default none)."""
        return []

    @pytest.fixture(params=ALL_QTYPES)
    def qtype(self, request):
        if request.param not in self.qtypes:
            pytest.skip(f"backend does not claim {request.param}")
        return request.param

    # -- general -------------------------------------------------------------------------------
    def test_availability_and_describe(self, backend):
        ok, reason = type(backend).availability()
        assert isinstance(ok, bool) and isinstance(reason, str)
        assert ok, reason
        assert isinstance(backend.describe(), str) and backend.describe()
        assert isinstance(backend.compute_dtype, torch.dtype)

    # -- linear --------------------------------------------------------------------------------
    def test_linear_matches_dequantized(self, backend, qtype):
        weight = random_weight(qtype, (self.out_features, self.in_features), seed=1)
        op = backend.linear(weight)
        assert (op.in_features, op.out_features) == (self.in_features, self.out_features)
        dense = weight.dequantize()
        gen = torch.Generator().manual_seed(2)
        for tokens in self.token_counts:
            x = torch.randn(tokens, self.in_features, generator=gen)
            y = op(x.to(backend.compute_dtype))
            assert tuple(y.shape) == (tokens, self.out_features)
            assert y.dtype == backend.compute_dtype
            assert str(y.device).startswith(backend.device.split(":")[0])
            err = _rel_err(y.cpu(), x.double() @ dense.double().T)
            assert err <= self.rtol, f"{qtype} T={tokens}: relative error {err:.2e} > {self.rtol}"

    def test_linear_with_bias(self, backend):
        weight = random_weight("F32", (self.out_features, self.in_features), seed=3)
        bias = random_weight("F32", (self.out_features,), seed=4, std=1.0, name="random.bias")
        op = backend.linear(weight, bias)
        x = torch.randn(2, self.in_features, generator=torch.Generator().manual_seed(5))
        ref = x.double() @ weight.dequantize().double().T + bias.dequantize().double()
        assert _rel_err(op(x.to(backend.compute_dtype)).cpu(), ref) <= self.rtol

    # -- embedding -----------------------------------------------------------------------------
    def test_embedding_matches_dequantized(self, backend, qtype):
        vocab, dim = 300, 256
        weight = random_weight(qtype, (vocab, dim), seed=6)
        op = backend.embedding(weight)
        assert (op.num_embeddings, op.dim) == (vocab, dim)
        ids = torch.tensor([0, 7, vocab - 1, 7, 123], dtype=torch.long)
        rows = op(ids)
        assert tuple(rows.shape) == (5, dim) and rows.dtype == backend.compute_dtype
        err = _rel_err(rows.cpu(), weight.dequantize()[ids])
        assert err <= self.rtol, f"{qtype}: embedding relative error {err:.2e} > {self.rtol}"

    def test_tied_embedding_and_head_agree(self, backend):
        weight = random_weight("Q8_0", (320, 256), seed=7)
        table, head = backend.embedding(weight), backend.linear(weight)
        rows = table(torch.arange(320))  # [V, D]
        x = torch.randn(1, 256, generator=torch.Generator().manual_seed(8))
        assert _rel_err(head(x.to(backend.compute_dtype)).cpu(), x.double() @ rows.double().T) \
            <= max(self.rtol, 1e-5)

    # -- dense ---------------------------------------------------------------------------------
    @pytest.mark.parametrize("qtype_1d", ["F32", "F16", "BF16"])
    def test_dense_is_float32(self, backend, qtype_1d):
        weight = random_weight(qtype_1d, (640,), seed=9, std=1.0, name="random.norm.weight")
        t = backend.dense(weight)
        assert t.dtype == torch.float32 and tuple(t.shape) == (640,)
        assert torch.equal(t.cpu(), weight.dequantize())

    # -- real model tensors --------------------------------------------------------------------
    def test_real_weights(self, backend, real_weights):
        if not real_weights:
            pytest.skip("no real_weights fixture provided")
        gen = torch.Generator().manual_seed(10)
        for weight in real_weights:
            if len(weight.shape) == 1:
                assert torch.equal(backend.dense(weight).cpu(), weight.dequantize())
                continue
            op = backend.linear(weight)
            x = torch.randn(2, weight.shape[1], generator=gen)
            ref = x.double() @ weight.dequantize().double().T
            err = _rel_err(op(x.to(backend.compute_dtype)).cpu(), ref)
            assert err <= self.rtol, f"{weight.name} ({weight.qtype}): {err:.2e} > {self.rtol}"
