"""The ``safetensors`` weight loader: a Hugging Face model directory -> canonical
:class:`ModelSource`.

Reads local directories only (no hub access): ``config.json``, one ``*.safetensors`` file or the
shards listed in ``model.safetensors.index.json``, the tokenizer files and
``generation_config.json``. Tensors stay memory-mapped in their stored dtype; only Gemma's norm
weights are materialized (float32 with the ``+1`` folded in, as llama.cpp's converter does).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from forge_kernel.errors import ModelFormatError
from forge_kernel.interfaces.loader import ModelSource, WeightLoader, WeightTensor, tensor_summary
from forge_plugin_safetensors.files import checkpoint_files, read_safetensors
from forge_plugin_safetensors.hf_config import model_config, text_config
from forge_plugin_safetensors.names import canonical_name, is_gemma_norm

if TYPE_CHECKING:
    import torch


def decode(weight: WeightTensor) -> torch.Tensor:
    """A new float32 tensor of ``weight`` (F32, F16, or BF16 stored as ``uint16``)."""
    import torch

    data = np.ascontiguousarray(weight.data)
    if weight.qtype == "F32":
        out = torch.tensor(data)
    elif weight.qtype == "F16":
        out = torch.from_numpy(data.astype(np.float32))
    elif weight.qtype == "BF16":
        out = torch.from_numpy((data.astype(np.uint32) << 16).view(np.float32))
    else:
        raise ValueError(f"tensor {weight.name!r}: unexpected type {weight.qtype}")
    return out.reshape(weight.shape)


def _read_json(path: Path, required: bool = False) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise ModelFormatError(path.parent, f"no {path.name} in the model directory")
        return {}
    try:
        value = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFormatError(path, f"invalid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ModelFormatError(path, "expected a JSON object")
    return value


class SafetensorsLoader(WeightLoader):
    """Loads Llama/Mistral, Qwen2, Qwen3 and Gemma 3 directories saved by transformers."""

    name = "safetensors"

    def can_load(self, path: Path) -> bool:
        try:
            path = Path(path)
            return path.is_dir() and (path / "config.json").is_file() and (
                (path / "model.safetensors.index.json").is_file()
                or any(path.glob("*.safetensors")))
        except OSError:
            return False

    def load(self, path: Path) -> ModelSource:
        path = Path(path)
        if not path.is_dir():
            raise ModelFormatError(path, "not a model directory (expected config.json and "
                                         "*.safetensors files)")
        raw = text_config(_read_json(path / "config.json", required=True))
        layers = raw.get("num_hidden_layers")
        arch = _probe_arch(path, raw)
        tensors, ignored, file_bytes = self._tensors(path, arch, int(layers or 0))
        config = model_config(path, raw, has_output="output.weight" in tensors)
        if config.tie_word_embeddings is False and raw.get("tie_word_embeddings"):
            tensors.pop("output.weight", None)  # stored copy of the tied embedding
            config.tie_word_embeddings = True
        from forge_plugin_tokenizers import from_hf_dir

        tokenizer = from_hf_dir(path)
        return ModelSource(path=path, format="safetensors", config=config, tokenizer=tokenizer,
                           tensors=tensors,
                           metadata=_metadata(path, raw, config.architecture, tensors,
                                              tokenizer, ignored, file_bytes))

    def _tensors(self, path: Path, arch: str, layers: int):
        tensors: dict[str, WeightTensor] = {}
        ignored: list[str] = []
        file_bytes = 0
        for file in checkpoint_files(path):
            file_bytes += file.stat().st_size
            for stored in read_safetensors(file):
                name = canonical_name(stored.name, arch, layers)
                if name is None:
                    ignored.append(stored.name)
                    continue
                data, qtype = stored.data, stored.qtype
                if is_gemma_norm(name, arch):
                    probe = WeightTensor(name, stored.shape, qtype, data, decode)
                    data, qtype = probe.dequantize().numpy() + np.float32(1.0), "F32"
                if name in tensors:
                    raise ModelFormatError(file, f"tensor {stored.name!r} ({name}) stored twice")
                tensors[name] = WeightTensor(name, stored.shape, qtype, data, decode)
        if "token_embd.weight" not in tensors:
            raise ModelFormatError(path, "no token embedding (model.embed_tokens.weight) in the "
                                         "weight files")
        return tensors, ignored, file_bytes


def _probe_arch(path: Path, raw: dict[str, Any]) -> str:
    from forge_plugin_safetensors.hf_config import ARCHITECTURES

    model_type = raw.get("model_type")
    if model_type not in ARCHITECTURES:
        raise ModelFormatError(path / "config.json", f"unknown model_type {model_type!r} "
                               f"(supported: {', '.join(sorted(ARCHITECTURES))})")
    if not isinstance(raw.get("num_hidden_layers"), int):
        raise ModelFormatError(path / "config.json", "required key 'num_hidden_layers' is missing")
    return ARCHITECTURES[model_type]


def _metadata(path: Path, raw: dict[str, Any], arch: str, tensors: dict[str, WeightTensor],
              tokenizer: Any, ignored: list[str], file_bytes: int) -> dict[str, Any]:
    return {
        "name": raw.get("_name_or_path") or path.name,
        "license": None,
        "architecture": arch,
        "chat_template": getattr(tokenizer, "chat_template", None),
        "generation": _read_json(path / "generation_config.json"),
        **tensor_summary(tensors),
        "file_size": file_bytes,
        "ignored_tensors": ignored,
    }
