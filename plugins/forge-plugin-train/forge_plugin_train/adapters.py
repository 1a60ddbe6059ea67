"""Reading LoRA adapters for serving: ``name=PATH`` specs (``forge serve --lora``) and PEFT
adapter directories (``adapter_config.json`` + ``adapter_model.safetensors``), as ``forge
train`` writes them (a run's ``final/``) or any PEFT ``save_pretrained`` produces.

Only what the serving runtime (:mod:`forge_plugin_train.serving`) can apply exactly is
accepted: plain LoRA on the decoder's linear projections. Anything else (DoRA, trained biases,
``modules_to_save``, embedding LoRA) is refused with the file and the reason, never ignored.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from forge_kernel.errors import ConfigError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
"""Adapter names: what follows ``base:`` in a request's ``model``."""
KEY = re.compile(r"(?:^|\.)(layers\.\d+\.(?:self_attn|mlp)\.\w+?)\.lora_([AB])(?:\.\w+)?\.weight$")
"""PEFT tensor names, e.g. ``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight``."""


@dataclass(slots=True)
class LoraModule:
    """One adapted projection: ``delta(x) = (x @ A.T) @ B.T * scale``."""

    a: torch.Tensor  # [r, in_features]
    b: torch.Tensor  # [out_features, r]
    scale: float


@dataclass(slots=True)
class Adapter:
    """A loaded adapter: its modules by Hugging Face module name (``layers.0.self_attn.q_proj``)."""

    name: str
    path: Path
    modules: dict[str, LoraModule] = field(default_factory=dict)


def parse_specs(text: str | None) -> dict[str, str]:
    """``"a=PATH,b=PATH"`` (the ``lora`` config value; repeated ``--lora`` flags are joined
    with commas) -> ``{name: PATH}``; a malformed entry is a :class:`ConfigError` naming it."""
    specs: dict[str, str] = {}
    for entry in (text or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        name, sep, path = entry.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not path:
            raise ConfigError(f"--lora {entry!r}: expected NAME=PATH")
        if not NAME.fullmatch(name):
            raise ConfigError(f"--lora {entry!r}: the name must be letters, digits, '.', '_' or "
                              f"'-' (it is used as model \"<base>:{name}\")")
        if name in specs:
            raise ConfigError(f"--lora: adapter name {name!r} is given twice")
        specs[name] = path
    return specs


def adapter_dir(ref: str | Path) -> Path:
    """The PEFT directory for ``ref``: an adapter directory itself, a ``forge train`` run
    directory (its ``final/``), or a run id or name under ``$FORGE_HOME``."""
    path = Path(ref).expanduser()
    for candidate in (path, path / "final"):
        if (candidate / "adapter_config.json").is_file():
            return candidate
    if not path.exists():
        from forge_plugin_train.runs import Run, RunNotFound

        try:
            final = Run.load(str(ref)).info.get("final")
        except RunNotFound:
            raise ConfigError(f"LoRA adapter {str(ref)!r}: no such directory or training "
                              f"run") from None
        if final and (Path(final) / "adapter_config.json").is_file():
            return Path(final)
        raise ConfigError(f"LoRA adapter {str(ref)!r}: the run has no adapter (not finished, "
                          f"or a full fine-tune: export it and serve it as --model)")
    raise ConfigError(f"LoRA adapter {str(path)!r}: no adapter_config.json (a PEFT adapter "
                      f"directory or a forge train run directory is expected)")


def _config(directory: Path) -> dict:
    where = directory / "adapter_config.json"
    try:
        config = json.loads(where.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{where}: cannot read ({exc})") from None
    refusals = {"peft_type": config.get("peft_type", "LORA") != "LORA",
                "use_dora": bool(config.get("use_dora")),
                "bias": config.get("bias", "none") != "none",
                "modules_to_save": bool(config.get("modules_to_save")),
                "fan_in_fan_out": bool(config.get("fan_in_fan_out"))}
    bad = [key for key, refused in refusals.items() if refused]
    if bad:
        raise ConfigError(f"{where}: {bad[0]}={config.get(bad[0])!r} is not supported when "
                          f"serving adapters (plain LoRA only; merge it with forge train "
                          f"export --merge instead)")
    return config


def _tensors(directory: Path) -> dict[str, torch.Tensor]:
    safetensors, legacy = directory / "adapter_model.safetensors", directory / "adapter_model.bin"
    if safetensors.is_file():
        from safetensors.torch import load_file

        return load_file(str(safetensors))
    if legacy.is_file():
        return torch.load(legacy, map_location="cpu", weights_only=True)
    raise ConfigError(f"{directory}: no adapter_model.safetensors (or .bin)")


def _alpha(config: dict, module: str) -> float:
    for pattern, alpha in (config.get("alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", module):  # PEFT's pattern-key rule
            return float(alpha)
    return float(config.get("lora_alpha", 8))


def load_adapter(name: str, ref: str | Path, dtype: torch.dtype = torch.float32) -> Adapter:
    """Read the adapter ``ref`` (see :func:`adapter_dir`) as ``name``; A and B in ``dtype``."""
    directory = adapter_dir(ref)
    config = _config(directory)
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in _tensors(directory).items():
        match = KEY.search(key)
        if match is None:
            raise ConfigError(f"{directory}: tensor {key!r} is not a LoRA A/B matrix of a "
                              f"decoder projection; serving supports those only")
        pairs.setdefault(match.group(1), {})[match.group(2)] = tensor
    adapter = Adapter(name, directory)
    for module, ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise ConfigError(f"{directory}: {module} has lora_{''.join(ab)} only")
        a, b = ab["A"], ab["B"]
        rank = a.shape[0]
        if a.dim() != 2 or b.dim() != 2 or b.shape[1] != rank:
            raise ConfigError(f"{directory}: {module} has A {tuple(a.shape)} and B "
                              f"{tuple(b.shape)}, not [r, in] and [out, r]")
        alpha = _alpha(config, module)
        scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
        adapter.modules[module] = LoraModule(a.to(dtype), b.to(dtype), scale)
    if not adapter.modules:
        raise ConfigError(f"{directory}: the adapter has no LoRA tensors")
    return adapter
