"""The ``exl2`` weight loader: an EXL2 model directory (exllamav2's layout) -> a forge
:class:`ModelSource`.

Recognised by ``config.json`` -> ``quantization_config.quant_method == "exl2"`` (loaders are
tried in name order, so ``exl2`` is asked before ``safetensors``, which would refuse the int32
tensors). Quantized linears stay packed in memory and are dequantized to float32 when the
backend prepares its matrices (``WeightTensor.dequantize``); the CPU backend then runs them as
it runs any other weight (``exact`` float32 or its int8 re-quantization). Everything else —
config, tokenizer, canonical names, Gemma's ``+1`` norms — goes through forge-plugin-
safetensors' and forge-plugin-tokenizers' readers, as for any Hugging Face directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from forge_kernel.errors import ModelFormatError
from forge_kernel.interfaces.loader import ModelSource, WeightLoader, WeightTensor
from forge_plugin_exl2.pack import SUFFIXES, Exl2FormatError, unpack_linear

if TYPE_CHECKING:
    import torch

_FLOAT = {np.dtype("float32"): "F32", np.dtype("float16"): "F16"}


def quant_config(path: Path) -> dict[str, Any] | None:
    """``quantization_config`` of an EXL2 directory, else ``None`` (never raises)."""
    try:
        raw = json.loads((Path(path) / "config.json").read_text())
        q = raw.get("quantization_config")
        return q if isinstance(q, dict) and q.get("quant_method") == "exl2" else None
    except (OSError, ValueError, AttributeError):
        return None


def _dense(weight: WeightTensor) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.asarray(weight.data, dtype=np.float32).reshape(weight.shape))


class Exl2Loader(WeightLoader):
    """Loads directories written by ``forge quantize --method exl2`` (and exllamav2's, for the
    architectures forge runs: Llama/Mistral, Qwen2/3, Gemma 3)."""

    name = "exl2"

    def can_load(self, path: Path) -> bool:
        try:
            return Path(path).is_dir() and quant_config(path) is not None
        except OSError:
            return False

    def load(self, path: Path) -> ModelSource:
        from forge_plugin_safetensors.files import checkpoint_files
        from forge_plugin_safetensors.hf_config import model_config, text_config
        from forge_plugin_safetensors.names import canonical_name, is_gemma_norm
        from forge_plugin_tokenizers import from_hf_dir

        path = Path(path)
        qcfg = quant_config(path)
        if qcfg is None:
            raise ModelFormatError(path, "not an EXL2 directory (config.json has no "
                                         "quantization_config with quant_method 'exl2')")
        raw = text_config(json.loads((path / "config.json").read_text()))
        stored = self._read(checkpoint_files(path))
        arch = model_config(path, raw, has_output=False).architecture
        layers = int(raw["num_hidden_layers"])
        tensors: dict[str, WeightTensor] = {}
        quantized = {k.removesuffix(".q_weight") for k in stored if k.endswith(".q_weight")}
        for prefix in sorted(quantized):
            name = canonical_name(prefix + ".weight", arch, layers)
            if name is None:
                raise ModelFormatError(path, f"quantized tensor {prefix!r} is not a known layer")
            tensors[name] = self._linear(path, prefix, name, stored)
        for key, value in stored.items():
            owner, _, suffix = key.rpartition(".")
            if owner in quantized and suffix in SUFFIXES:
                continue
            name = canonical_name(key, arch, layers)
            if name is None:
                continue
            if value.dtype not in _FLOAT:
                raise ModelFormatError(path, f"tensor {key!r} has dtype {value.dtype}")
            if is_gemma_norm(name, arch):
                value = value.astype(np.float32) + np.float32(1.0)
            tensors[name] = WeightTensor(name, tuple(value.shape), _FLOAT[value.dtype], value,
                                         _dense)
        config = model_config(path, raw, has_output="output.weight" in tensors)
        tokenizer = from_hf_dir(path)
        numel = sum(int(np.prod(t.shape)) for n, t in tensors.items() if t.qtype == "EXL2")
        qbytes = sum(v.nbytes for k, v in stored.items()
                     if k.rpartition(".")[2] in SUFFIXES)
        return ModelSource(path=path, format="exl2", config=config, tokenizer=tokenizer,
                           tensors=tensors, metadata={
                               "name": path.name, "license": None, "architecture": arch,
                               "chat_template": tokenizer.chat_template,
                               "quantization": {"EXL2": {"count": len(quantized),
                                                         "bytes": qbytes,
                                                         "bpw": 8 * qbytes / max(numel, 1)}},
                               "exl2": qcfg,
                               "parameters": sum(int(np.prod(t.shape))
                                                 for t in tensors.values()),
                               "file_size": sum(f.stat().st_size
                                                for f in checkpoint_files(path))})

    @staticmethod
    def _read(files: list[Path]) -> dict[str, np.ndarray]:
        from safetensors import safe_open

        out: dict[str, np.ndarray] = {}
        for file in files:
            try:
                with safe_open(str(file), framework="numpy") as fh:
                    for key in fh.keys():  # noqa: SIM118 - safe_open is not a Mapping
                        out[key] = fh.get_tensor(key)
            except Exception as exc:  # noqa: BLE001 - safetensors raises SafetensorError
                raise ModelFormatError(file, f"unreadable safetensors file ({exc})") from None
        return out

    @staticmethod
    def _linear(path: Path, prefix: str, name: str, stored: dict[str, np.ndarray]
                ) -> WeightTensor:
        parts = {f"{prefix}.{s}": stored.get(f"{prefix}.{s}") for s in SUFFIXES}
        missing = [k for k, v in parts.items() if v is None]
        if missing:
            raise ModelFormatError(path, f"EXL2 layer {prefix!r} lacks {', '.join(missing)}")
        out_features = parts[f"{prefix}.q_weight"].shape[1]
        in_features = parts[f"{prefix}.q_invperm"].shape[0]

        def decode(weight: WeightTensor) -> torch.Tensor:
            import torch

            try:
                return torch.from_numpy(unpack_linear(prefix, parts))
            except Exl2FormatError as exc:
                raise ModelFormatError(path, str(exc)) from None

        # ``data`` is the packed weight as bytes (1-D, so the CPU backend does not slice it
        # by rows); the decoder closes over all five tensors.
        packed = parts[f"{prefix}.q_weight"].view(np.uint8).reshape(-1)
        return WeightTensor(name, (out_features, in_features), "EXL2", packed, decode)
