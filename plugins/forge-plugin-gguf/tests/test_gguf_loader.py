"""The ``gguf`` loader on small files written with gguf-py: conformance, config, q/k layout,
bad input."""

from __future__ import annotations

import gguf
import gguf_craft_testlib as craft
import numpy as np
import pytest
import torch
from forge_plugin_gguf.loader import REQUIRED_KEYS, GGUFLoader

from forge_kernel.errors import ModelFormatError
from forge_kernel.plugins import get_host
from forge_kernel.testing.conformance.weight_loader import WeightLoaderConformance


@pytest.fixture(scope="module")
def loader():
    return get_host().registry.create("weight_loader", "gguf")


class TestTinyLlamaConformance(WeightLoaderConformance):
    @pytest.fixture(scope="class")
    @classmethod
    def loader(cls):
        return get_host().registry.create("weight_loader", "gguf")

    @pytest.fixture(scope="class")
    @classmethod
    def model_path(cls, tmp_path_factory):
        return craft.write(tmp_path_factory.mktemp("tiny") / "tiny.gguf", qtype="Q8_0",
                           tensors=craft.tiny_tensors(tied=False))


def test_registered_through_the_entry_point(loader):
    assert isinstance(loader, GGUFLoader) and loader.name == "gguf"


def test_config_and_metadata(loader, tmp_path):
    src = loader.load(craft.write(tmp_path / "m.gguf"))
    cfg = src.config
    assert (cfg.architecture, cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size) == \
        ("llama", len(craft.TOKENS), craft.HIDDEN, craft.FFN)
    assert (cfg.num_layers, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim) == \
        (craft.LAYERS, craft.HEADS, craft.KV_HEADS, craft.HEAD_DIM)
    assert cfg.context_length == 128 and cfg.rope_theta == 500000.0
    assert cfg.rms_norm_eps == pytest.approx(1e-5) and cfg.rope_scaling is None
    assert cfg.tie_word_embeddings and cfg.extra == {}
    meta = src.metadata
    assert meta["name"] == "tiny test model" and meta["architecture"] == "llama"
    assert meta["quantization"]["F32"]["count"] == len(src.tensors)
    assert meta["parameters"] == sum(a.size for a in craft.tiny_tensors().values())
    assert meta["file_size"] == (tmp_path / "m.gguf").stat().st_size


@pytest.mark.parametrize("qtype", ["F32", "F16", "Q8_0", "Q4_0", "Q5_1"])
def test_llama_qk_back_in_hf_layout(loader, tmp_path, qtype):
    """llama.cpp permutes q/k rows; we undo it exactly (rows of blocks move, nothing re-rounds)."""
    hf = craft.tiny_tensors()
    src = loader.load(craft.write(tmp_path / "m.gguf", qtype=qtype))
    quant = gguf.GGMLQuantizationType[qtype]
    for name in ("blk.0.attn_q.weight", "blk.1.attn_k.weight", "blk.0.attn_v.weight"):
        ref = hf[name]
        if qtype != "F32":  # what the file holds after storage rounding, in HF row order
            stored = gguf.quants.quantize(ref, quant) if qtype != "F16" else ref.astype(np.float16)
            ref = gguf.quants.dequantize(stored.view(np.uint8), quant).reshape(ref.shape)
        got = src.tensor(name).dequantize()
        assert got.shape == ref.shape and torch.equal(got, torch.from_numpy(ref)), name


def test_other_architectures_are_not_unpermuted(loader, tmp_path):
    hf = craft.tiny_tensors()
    src = loader.load(craft.write(tmp_path / "q.gguf", arch="qwen3"))
    assert src.config.architecture == "qwen3"
    assert torch.equal(src.tensor("blk.0.attn_q.weight").dequantize(),
                       torch.from_numpy(hf["blk.0.attn_q.weight"]))


def test_gemma3_extras(loader, tmp_path):
    meta = {"block_count": 12, "attention.sliding_window": 512,
            "final_logit_softcapping": 30.0}
    tensors = {k: v for k, v in craft.tiny_tensors().items() if not k.startswith("blk.")}
    for i in range(12):
        tensors[f"blk.{i}.attn_norm.weight"] = np.ones(craft.HIDDEN, np.float32)
    src = loader.load(craft.write(tmp_path / "g.gguf", arch="gemma3", tensors=tensors,
                                  extra_meta=meta))
    extra = src.config.extra
    assert extra["layer_types"] == (["sliding"] * 5 + ["full"]) * 2
    assert extra["sliding_window"] == 512 and extra["rope_local_theta"] == 10000.0
    assert extra["query_pre_attn_scalar"] == craft.HEAD_DIM
    assert extra["final_logit_softcapping"] == 30.0 and extra["attn_logit_softcapping"] is None


def test_rope_scaling_from_metadata(loader, tmp_path):
    meta = {"rope.scaling.type": "linear", "rope.scaling.factor": 4.0}
    src = loader.load(craft.write(tmp_path / "r.gguf", extra_meta=meta))
    assert src.config.rope_scaling == {"rope_type": "linear", "factor": 4.0}


def test_unknown_architecture_is_accepted_by_the_loader(loader, tmp_path):
    src = loader.load(craft.write(tmp_path / "x.gguf", arch="frobnicator", permute=False))
    assert src.config.architecture == "frobnicator"


# --- bad input ---------------------------------------------------------------------------------

def _raises(loader, path, pattern: str) -> str:
    with pytest.raises(ModelFormatError, match=pattern) as info:
        loader.load(path)
    assert str(path) in str(info.value)
    return str(info.value)


def test_wrong_magic(loader, tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGML" + bytes(100))
    _raises(loader, path, "not a GGUF file")
    assert not loader.can_load(path)


@pytest.mark.parametrize("keep", [10, 30, 300, "half"])
def test_truncated_file(loader, tmp_path, keep):
    good = craft.write(tmp_path / "good.gguf")
    data = good.read_bytes()
    path = tmp_path / "cut.gguf"
    path.write_bytes(data[:len(data) // 2 if keep == "half" else keep])
    _raises(loader, path, "truncated|not a GGUF")


def test_unsupported_tensor_type_names_tensor_and_type(loader, tmp_path):
    tensors = craft.tiny_tensors()
    path = tmp_path / "iq.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tensor("blk.0.ffn_up.weight", np.zeros((4, 18 * 2), np.uint8),
                 raw_dtype=gguf.GGMLQuantizationType.IQ4_NL)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert tensors  # (the file needs no other content: types are checked before metadata)
    message = _raises(loader, path, "IQ4_NL")
    assert "blk.0.ffn_up.weight" in message


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_missing_required_metadata_key_is_named(loader, tmp_path, key):
    path = craft.write(tmp_path / "k.gguf", skip_keys=(key,))
    _raises(loader, path, f"llama.{key}")


def test_missing_tokenizer(loader, tmp_path):
    _raises(loader, craft.write(tmp_path / "t.gguf", tokenizer=False), "tokenizer")


def test_missing_file_and_directory(loader, tmp_path):
    _raises(loader, tmp_path / "nope.gguf", "cannot open")
    assert loader.can_load(tmp_path) is False


def test_type_tables_agree_with_gguf_py():
    """The reader's copied GGML tables (it no longer imports gguf-py) match gguf-py's."""
    from forge_plugin_gguf.reader import _SCALARS, ARRAY, GGML_TYPES, STRING

    theirs = {int(t): (t.name, *gguf.GGML_QUANT_SIZES[t]) for t in gguf.GGMLQuantizationType
              if t in gguf.GGML_QUANT_SIZES}
    assert {k: theirs.get(k) for k in GGML_TYPES} == GGML_TYPES
    assert set(theirs) <= set(GGML_TYPES), "gguf-py knows GGML types the reader does not"
    values = {t.name: int(t) for t in gguf.GGUFValueType}
    assert (values["STRING"], values["ARRAY"]) == (STRING, ARRAY)
    assert set(_SCALARS) == set(values.values()) - {STRING, ARRAY}


def test_loading_imports_neither_gguf_py_nor_sentencepiece(tmp_path):
    """Serving a GGUF needs only the reader: gguf-py pulls in sentencepiece, yaml and more
    (~7 MB of RSS per process)."""
    import subprocess
    import sys

    path = craft.write(tmp_path / "m.gguf")
    code = ("import sys; from forge_plugin_gguf.loader import GGUFLoader; "
            f"GGUFLoader().load({str(path)!r}); "
            "print(sorted(m for m in ('gguf', 'sentencepiece', 'yaml') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_release_header_keeps_metadata_readable(tmp_path):
    from forge_plugin_gguf.reader import read_gguf

    g = read_gguf(craft.write(tmp_path / "m.gguf"))
    scores = np.array(g.metadata["tokenizer.ggml.scores"])
    assert 0 < g.header_bytes <= g.tensors[0].offset
    g.release_header()  # the mapping is shared and read-only: pages come back on access
    assert np.array_equal(g.metadata["tokenizer.ggml.scores"], scores)
