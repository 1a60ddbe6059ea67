"""PreparedWeights: backends share one prepared form per stored tensor, never a dead source's."""

from __future__ import annotations

import gc

import numpy as np
import torch

from forge_kernel.interfaces.loader import PreparedWeights, WeightTensor


def _weight(data: np.ndarray) -> WeightTensor:
    return WeightTensor("blk.0.attn_q.weight", data.shape, "F32", data,
                        decoder=lambda w: torch.from_numpy(np.array(w.data)))


def test_tied_tensors_share_one_form_and_variants_are_separate() -> None:
    cache = PreparedWeights()
    weight = _weight(np.ones((4, 8), dtype=np.float32))
    form, int8_form = torch.ones(4, 8), torch.zeros(4, 8)
    cache.put(weight, form)
    cache.put(weight, int8_form, "int8")
    assert cache.get(weight) is form
    assert cache.get(weight, "int8") is int8_form
    assert cache.get(_weight(weight.data)) is form  # the same array under another WeightTensor


def test_other_storage_at_the_same_address_is_not_mistaken_for_it() -> None:
    # A view shares the address (and name, type, shape): what a freed source's reused memory
    # looks like to storage_key(). It must not get the first array's prepared form.
    cache = PreparedWeights()
    first = _weight(np.ones((4, 8), dtype=np.float32))
    second = _weight(first.data[:])
    assert first.storage_key() == second.storage_key()
    cache.put(first, torch.ones(4, 8))
    assert cache.get(second) is None


def test_an_entry_dies_with_its_form() -> None:
    cache = PreparedWeights()
    weight = _weight(np.ones((4, 8), dtype=np.float32))
    cache.put(weight, torch.ones(4, 8))
    gc.collect()
    assert cache.get(weight) is None
    assert not cache._entries
