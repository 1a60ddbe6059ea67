"""``WeightLoaderConformance``: the contract every
:class:`~forge_kernel.interfaces.loader.WeightLoader` must meet, as a pytest class to subclass.

Usage in a plugin's tests::

    from forge_kernel.testing.conformance.weight_loader import WeightLoaderConformance

    class TestMyLoader(WeightLoaderConformance):
        @pytest.fixture(scope="class")
        @classmethod
        def loader(cls):
            return MyLoader()

        @pytest.fixture(scope="class")
        @classmethod
        def model_path(cls, tmp_path_factory):
            return write_a_small_valid_model(tmp_path_factory.mktemp("m"))

Checked: ``can_load`` is true for the model and false, without raising, for foreign files
(text, empty, random bytes, missing paths, empty directories); ``load`` returns a
:class:`ModelSource` whose config, tensors (canonical names, torch-order shapes, float32
``dequantize()``) and tokenizer agree with each other; foreign and truncated files raise
:class:`~forge_kernel.errors.ModelFormatError` naming the file. Override ``dequantize_limit`` to
check more (or fewer) tensors' decoders.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from forge_kernel.errors import ModelFormatError
from forge_kernel.interfaces.loader import ModelSource, WeightLoader, WeightTensor
from forge_kernel.interfaces.tokenizer import Tokenizer

torch = pytest.importorskip("torch")

_LAYER = re.compile(r"^blk\.(\d+)\.")
TRUNCATE_AT = 8 * 1024 * 1024
"""Truncated copies keep at most this many bytes (half the file when smaller)."""


def _foreign_paths(root: Path) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    text = root / "notes.txt"
    text.write_text("this is not a model\n")
    empty = root / "empty.bin"
    empty.write_bytes(b"")
    noise = root / "noise.bin"
    noise.write_bytes(bytes(range(256)) * 64)
    folder = root / "empty_dir"
    folder.mkdir(exist_ok=True)
    return [text, empty, noise, folder, root / "does-not-exist"]


class WeightLoaderConformance:
    """Subclass and provide ``loader`` and ``model_path`` fixtures."""

    dequantize_limit: int = 8
    """How many tensors (the smallest ones) get their decoder checked."""

    @pytest.fixture(scope="class")
    @classmethod
    def loader(cls) -> WeightLoader:
        raise NotImplementedError("provide a `loader` fixture returning the loader under test")

    @pytest.fixture(scope="class")
    @classmethod
    def model_path(cls) -> Path:
        raise NotImplementedError("provide a `model_path` fixture: a valid model for the loader")

    @pytest.fixture(scope="class")
    @classmethod
    def source(cls, loader, model_path):
        src = loader.load(model_path)
        yield src
        src.close()

    def test_name(self, loader):
        assert isinstance(loader.name, str) and loader.name

    def test_can_load_its_model(self, loader, model_path):
        assert loader.can_load(model_path) is True

    def test_can_load_foreign_files_is_false_without_raising(self, loader, tmp_path):
        for path in _foreign_paths(tmp_path):
            assert loader.can_load(path) is False, path

    def test_load_foreign_file_raises_model_format_error_naming_it(self, loader, tmp_path):
        for path in _foreign_paths(tmp_path)[:3]:
            with pytest.raises(ModelFormatError) as info:
                loader.load(path)
            assert path.name in str(info.value), str(info.value)

    def test_load_truncated_copy_raises_model_format_error_naming_it(self, loader, model_path,
                                                                     tmp_path):
        model_path = Path(model_path)
        copy = tmp_path / model_path.name
        if model_path.is_dir():
            shutil.copytree(model_path, copy)
            victim = max((p for p in copy.rglob("*") if p.is_file()),
                         key=lambda p: p.stat().st_size)
            keep = min(victim.stat().st_size // 2, TRUNCATE_AT)
            with open(victim, "r+b") as fh:
                fh.truncate(keep)
        else:  # copy only the bytes kept (model files can be large)
            victim = copy
            keep = min(model_path.stat().st_size // 2, TRUNCATE_AT)
            with open(model_path, "rb") as src, open(copy, "wb") as dst:
                dst.write(src.read(keep))
        with pytest.raises(ModelFormatError) as info:
            loader.load(copy).close()
        assert victim.name in str(info.value) or str(copy) in str(info.value), str(info.value)

    def test_source_basics(self, source, model_path):
        assert isinstance(source, ModelSource)
        assert Path(source.path) == Path(model_path)
        assert isinstance(source.format, str) and source.format
        assert isinstance(source.metadata, dict)
        source.close()  # idempotent: the fixture closes again

    def test_tensors_are_canonical(self, source):
        assert source.tensors, "no tensors"
        for name, weight in source.tensors.items():
            assert isinstance(weight, WeightTensor)
            assert weight.name == name
            assert "model." not in name and not name.startswith("lm_head"), name
            assert all(isinstance(d, int) and d > 0 for d in weight.shape), (name, weight.shape)
            assert isinstance(weight.qtype, str) and weight.qtype.upper() == weight.qtype
            assert weight.nbytes > 0

    def test_config_agrees_with_tensors(self, source):
        cfg, tensors = source.config, source.tensors
        embd = source.tensor("token_embd.weight")
        assert embd.shape == (cfg.vocab_size, cfg.hidden_size)
        assert cfg.tie_word_embeddings == ("output.weight" not in tensors)
        if not cfg.tie_word_embeddings:
            assert tensors["output.weight"].shape == (cfg.vocab_size, cfg.hidden_size)
        layers = {int(m.group(1)) for n in tensors if (m := _LAYER.match(n))}
        assert layers == set(range(cfg.num_layers))
        q = tensors.get("blk.0.attn_q.weight")
        if q is not None:
            assert q.shape == (cfg.num_heads * cfg.head_dim, cfg.hidden_size)
        k = tensors.get("blk.0.attn_k.weight")
        if k is not None:
            assert k.shape == (cfg.num_kv_heads * cfg.head_dim, cfg.hidden_size)
        assert "output_norm.weight" in tensors
        assert cfg.context_length > 0 and cfg.rms_norm_eps > 0 and cfg.rope_theta > 0

    def test_dequantize_gives_float32_of_shape(self, source):
        smallest = sorted(source.tensors.values(), key=lambda w: w.nbytes)[:self.dequantize_limit]
        for weight in smallest:
            out = weight.dequantize()
            assert isinstance(out, torch.Tensor) and out.dtype == torch.float32, weight.name
            assert tuple(out.shape) == tuple(weight.shape), weight.name
            assert torch.isfinite(out).all(), weight.name

    def test_tokenizer_fits_the_model(self, source):
        tok = source.tokenizer
        assert isinstance(tok, Tokenizer)
        assert 0 < tok.vocab_size <= source.config.vocab_size
        ids = tok.encode("hello world", add_special_tokens=False)
        assert ids and all(0 <= i < source.config.vocab_size for i in ids)
        assert "hello" in tok.decode(ids)

    def test_missing_tensor_error_names_file(self, source):
        with pytest.raises(KeyError, match="no.such.tensor"):
            source.tensor("no.such.tensor")
