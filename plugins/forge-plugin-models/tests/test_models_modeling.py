"""forge_kernel.modeling: loader and architecture selection through a real plugin host, and the
errors a user sees when nothing fits."""

from __future__ import annotations

from pathlib import Path

import pytest

import forge_kernel.modeling as modeling
from forge_kernel import hookimpl
from forge_kernel.errors import MissingPluginError, ModelFormatError, UnknownImplementationError
from forge_kernel.interfaces.loader import ModelConfig, ModelSource, WeightLoader
from forge_kernel.plugins import PluginHost


class TextLoader(WeightLoader):
    """Accepts ``*.txt`` files; returns an empty source (architecture from the file's text)."""

    name = "text"

    def can_load(self, path: Path) -> bool:
        return path.suffix == ".txt"

    def load(self, path: Path) -> ModelSource:
        cfg = ModelConfig(architecture=path.read_text().strip(), vocab_size=1, hidden_size=1,
                          intermediate_size=1, num_layers=0, num_heads=1, num_kv_heads=1,
                          head_dim=2, context_length=8)
        return ModelSource(path=path, format="text", config=cfg, tokenizer=None, tensors={})


class TextLoaderPlugin:
    @hookimpl
    def forge_register_weight_loaders(self, register):
        register("text", TextLoader)


@pytest.fixture
def host(monkeypatch):
    """A fresh host with only the test loader (the process-wide host stays untouched)."""
    fresh = PluginHost()
    fresh.register(TextLoaderPlugin(), "text-loader")
    monkeypatch.setattr(modeling, "get_host", lambda: fresh)
    return fresh


def test_first_accepting_loader_is_used(host, tmp_path):
    model = tmp_path / "m.txt"
    model.write_text("llama")
    source = modeling.open_model_source(model)
    assert source.format == "text" and source.config.architecture == "llama"
    assert modeling.open_model_source(model, loader="text").format == "text"


def test_no_loader_accepts_names_the_file_and_the_plugins(host, tmp_path):
    model = tmp_path / "weights.bin"
    model.write_bytes(b"\0" * 64)
    with pytest.raises(ModelFormatError, match=r"weights\.bin.*tried: text.*forge-plugin-gguf"):
        modeling.open_model_source(model)


def test_missing_path_is_named(host, tmp_path):
    with pytest.raises(ModelFormatError, match=r"nope\.gguf: no such file"):
        modeling.open_model_source(tmp_path / "nope.gguf")


def test_unknown_loader_name_lists_available(host, tmp_path):
    with pytest.raises(UnknownImplementationError, match=r"'gguff'.*available: text"):
        modeling.open_model_source(tmp_path / "x.txt", loader="gguff")


def test_no_loader_installed_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(modeling, "get_host", lambda: PluginHost())
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    with pytest.raises(MissingPluginError,
                       match="forge-plugin-gguf.*forge-plugin-safetensors"):
        modeling.open_model_source(tmp_path / "m.gguf")


def test_unknown_architecture_names_it_and_the_installed_ones(tmp_path):
    """Through the real process-wide host, where forge-plugin-models is installed."""
    model = tmp_path / "m.txt"
    model.write_text("mamba9")
    source = TextLoader().load(model)
    with pytest.raises(ModelFormatError,
                       match=r"m\.txt: architecture 'mamba9' is not supported "
                             r"\(installed architectures: .*gemma3.*llama.*qwen3"):
        modeling.build_causal_lm(source, backend=None)


def test_no_architecture_plugin_says_what_to_install(host, tmp_path):
    model = tmp_path / "m.txt"
    model.write_text("llama")
    with pytest.raises(ModelFormatError, match="install forge-plugin-models"):
        modeling.build_causal_lm(TextLoader().load(model), backend=None)
