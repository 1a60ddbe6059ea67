"""The lean GGUF reader gives exactly what gguf-py's GGUFReader gives (metadata values and
tensor bytes), and a truncated file is a clear error."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")


def test_lean_reader_matches_gguf_py(tmp_path):
    import gguf
    from forge_plugin_ggml_quant.gguf_read import read_gguf
    from forge_plugin_models.testing import make_hf, write_gguf

    path = write_gguf(make_hf("llama"), tmp_path / "tiny.gguf", "Q8_0")
    reader = gguf.GGUFReader(path)
    kvs, tensors = read_gguf(path)
    ref = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert {k: v for k, v, _, _ in kvs} == ref
    assert [t.name for t in tensors] == [t.name for t in reader.tensors]
    for mine, theirs in zip(tensors, reader.tensors, strict=True):
        assert mine.ggml_type == int(theirs.tensor_type)
        np.testing.assert_array_equal(mine.data.reshape(-1),
                                      np.asarray(theirs.data).view(np.uint8).reshape(-1))


def test_truncated_gguf_is_a_clear_error(tmp_path):
    from forge_plugin_ggml_quant.formats import QuantizeError
    from forge_plugin_ggml_quant.sources import open_source
    from forge_plugin_models.testing import make_hf, write_gguf

    path = write_gguf(make_hf("llama"), tmp_path / "tiny.gguf", "Q8_0")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(QuantizeError, match="unreadable GGUF.*truncated"):
        open_source(path)
