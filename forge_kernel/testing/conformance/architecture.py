"""``ModelArchitectureConformance``: the contract of
:class:`~forge_kernel.interfaces.architecture.ModelArchitecture` (and the
:class:`~forge_kernel.interfaces.model.CausalLM` it builds).

Usage::

    class TestTinyLlama(ModelArchitectureConformance):
        prompts = [[1, 5, 9, 2], [1, 7, 3]]

        @pytest.fixture(scope="class")
        @classmethod
        def architecture(cls):
            return LlamaArchitecture()

        @pytest.fixture(scope="class")
        @classmethod
        def source(cls):              # a ModelSource of a tiny model of this architecture
            ...

        @pytest.fixture(scope="class")
        @classmethod
        def backend(cls):
            return get_host().registry.create("backend", "cpu", threads=1)

The built model must keep the invariants of
:func:`forge_kernel.testing.conformance.model_architecture.check_causal_lm` (chunked prefill ==
one pass, batch == alone, logits shape/dtype), driven with the ``naive`` KV cache.
"""

from __future__ import annotations

from typing import Any

import pytest

from forge_kernel.interfaces.architecture import ModelArchitecture
from forge_kernel.interfaces.model import CausalLM


class ModelArchitectureConformance:
    """Subclass and provide ``architecture``, ``source`` and ``backend`` fixtures."""

    prompts: list[list[int]] = [[1, 2, 3, 4, 5], [1, 6, 7]]
    rtol: float = 1e-4
    atol: float = 1e-4

    @pytest.fixture(scope="class")
    @classmethod
    def architecture(cls) -> ModelArchitecture:
        raise NotImplementedError("provide an `architecture` fixture")

    @pytest.fixture(scope="class")
    @classmethod
    def source(cls) -> Any:
        raise NotImplementedError("provide a `source` fixture (a tiny ModelSource)")

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls) -> Any:
        raise NotImplementedError("provide a `backend` fixture")

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls, architecture: ModelArchitecture, source: Any, backend: Any) -> CausalLM:
        return architecture.build(source, backend)

    def test_is_an_architecture(self, architecture: ModelArchitecture) -> None:
        assert isinstance(architecture, ModelArchitecture)

    def test_builds_a_causal_lm(self, model: CausalLM) -> None:
        assert isinstance(model, CausalLM)
        assert model.kv_cache_spec().bytes_per_token > 0

    def test_causal_lm_invariants(self, model: CausalLM) -> None:
        from forge_kernel.testing.conformance.model_architecture import (
            check_causal_lm,
            naive_cache_factory,
        )

        check_causal_lm(model, naive_cache_factory(model), self.prompts, self.rtol, self.atol)
