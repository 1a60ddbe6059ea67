"""The run spec: everything a training run needs, from YAML, flags or Python.

``RunSpec.from_file("run.yaml")``, ``RunSpec.from_dict({...})`` and the ``forge train`` flags
all end in the same validated dataclass; ``to_dict()`` is what the run directory snapshots.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forge_kernel.errors import ConfigError
from forge_plugin_train.coerce import build, plain

METHODS = ("sft", "lora", "qlora", "dpo")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("constant", "linear", "cosine")
DATA_FORMATS = ("auto", "text", "prompt_completion", "alpaca", "messages", "preference")
STRATEGIES = ("none", "ddp", "fsdp")


@dataclass(slots=True)
class DataSpec:
    """Training records: ``.jsonl``, ``.json`` or ``.txt`` (see :mod:`forge_plugin_train.data`)."""

    path: str = ""
    format: str = "auto"
    max_length: int = 512
    """Tokens per example (prompt + completion); longer examples are cut from the right."""
    shuffle: bool = True
    mask_prompt: bool = True
    """Train only on completion/assistant tokens (prompt tokens get label -100)."""
    packing: bool = False
    """Concatenate SFT examples into rows of exactly ``max_length`` tokens (no padding)."""
    eval_fraction: float = 0.0
    """Share of records held out for evaluation (chosen by a seeded hash of the record index)."""
    eval_path: str | None = None
    """A separate evaluation file; overrides ``eval_fraction``."""
    streaming: str = "auto"
    """``auto`` (stream files over 256 MiB), ``true`` or ``false``: streamed files are read
    line by line every epoch and shuffled through a seeded buffer instead of in memory."""
    shuffle_buffer: int = 1024


@dataclass(slots=True)
class OptimizerSpec:
    """``torch.optim`` optimizer over the trainable parameters."""

    name: str = "adamw"
    lr: float = 2e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.0
    """SGD only."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm; 0 turns clipping off."""


@dataclass(slots=True)
class ScheduleSpec:
    """LR schedule: linear warmup, then constant, linear or cosine decay to ``min_lr_ratio``."""

    name: str = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0


@dataclass(slots=True)
class LoraSpec:
    """PEFT LoRA adapter; used by ``lora``/``qlora`` and, when ``enabled``, by ``dpo``."""

    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass(slots=True)
class DpoSpec:
    """Direct Preference Optimization (sigmoid loss of Rafailov et al.)."""

    beta: float = 0.1
    reference: str = "model"
    """``model``: a frozen copy of the starting model (with LoRA: the adapter switched off);
    ``precomputed``: every record carries ``ref_chosen_logp`` and ``ref_rejected_logp``."""


@dataclass(slots=True)
class CheckpointSpec:
    """Periodic checkpoints (every N steps, newest ``keep`` kept) and the best by eval loss."""

    every: int = 0
    """Save a checkpoint every N optimizer steps (0: only the final weights)."""
    keep: int = 2
    """How many of the newest periodic checkpoints to keep."""
    keep_best: bool = True
    """Also keep the checkpoint with the lowest eval loss (needs eval)."""


@dataclass(slots=True)
class EvalSpec:
    """Evaluation on the held-out split every ``every`` steps (0: only at the end)."""

    every: int = 0
    max_batches: int = 0
    """Cap on eval batches per evaluation (0: the whole split)."""


@dataclass(slots=True)
class DistributedSpec:
    """``ddp`` / ``fsdp`` under ``torchrun`` (gloo on CPU, nccl on CUDA); ``none``: one process."""

    strategy: str = "none"
    backend: str = "auto"


@dataclass(slots=True)
class RunSpec:
    """One training run. ``steps`` counts optimizer steps, each ``batch_size * grad_accum *
    world_size`` examples; when ``epochs`` is set it overrides ``steps``."""

    data: DataSpec = field(default_factory=DataSpec)
    model: str = "default"
    """``default`` (Gemma 3 270M from its GGUF), a ``.gguf`` file or a Hugging Face model dir."""
    method: str = "lora"
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    lora: LoraSpec = field(default_factory=LoraSpec)
    dpo: DpoSpec = field(default_factory=DpoSpec)
    checkpoint: CheckpointSpec = field(default_factory=CheckpointSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)
    distributed: DistributedSpec = field(default_factory=DistributedSpec)
    precision: str = "auto"
    batch_size: int = 1
    grad_accum: int = 1
    steps: int = 50
    epochs: float | None = None
    gradient_checkpointing: bool = False
    seed: int = 0
    log_every: int = 1
    output: str | None = None
    """Optional directory that receives a copy of the final weights/adapter and tokenizer."""
    name: str | None = None

    @classmethod
    def from_file(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> RunSpec:
        """Read a YAML (or JSON, a YAML subset) run spec; errors name the file and field.

        ``overrides`` maps dotted field names to values (command-line flags win over the file)."""
        import yaml

        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: run spec not found") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a run spec must be a mapping of fields")
        # relative data paths in a spec file are relative to the file, not to the working directory
        for key in ("path", "eval_path"):
            value = (raw.get("data") or {}).get(key) if isinstance(raw.get("data"), dict) else None
            if isinstance(value, str) and value and not Path(value).is_absolute():
                raw["data"][key] = str((path.parent / value).resolve())
        return cls.from_dict(raw, source=str(path), overrides=overrides)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "run spec",
                  overrides: dict[str, Any] | None = None) -> RunSpec:
        """Build and validate a spec from a mapping (plus dotted ``overrides``)."""
        raw = _merge(raw, overrides or {}, source)
        spec = build(cls, raw, source, "")
        spec.validate(source)
        return spec

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping (what ``run.yaml`` in a run directory holds)."""
        return plain(dataclasses.asdict(self))

    def validate(self, source: str = "run spec") -> None:
        """Range and choice checks; raises :class:`ConfigError` naming the field."""
        def bad(name: str, problem: str) -> ConfigError:
            return ConfigError(f"{source}: field '{name}' {problem}")

        checks = [("method", self.method, METHODS), ("precision", self.precision, PRECISIONS),
                  ("optimizer.name", self.optimizer.name, OPTIMIZERS),
                  ("schedule.name", self.schedule.name, SCHEDULES),
                  ("data.format", self.data.format, DATA_FORMATS),
                  ("data.streaming", self.data.streaming, ("auto", "true", "false")),
                  ("dpo.reference", self.dpo.reference, ("model", "precomputed")),
                  ("distributed.strategy", self.distributed.strategy, STRATEGIES),
                  ("distributed.backend", self.distributed.backend, ("auto", "gloo", "nccl"))]
        for name, value, allowed in checks:
            if value not in allowed:
                raise bad(name, f"is {value!r}; expected one of {', '.join(allowed)}")
        if not self.data.path:
            raise bad("data.path", "is required (a .jsonl, .json or .txt file)")
        for name in ("batch_size", "grad_accum", "steps", "data.max_length", "lora.r",
                     "log_every", "data.shuffle_buffer"):
            head, _, tail = name.rpartition(".")
            if getattr(getattr(self, head) if head else self, tail) < 1:
                raise bad(name, "must be at least 1")
        if self.optimizer.lr <= 0 or not math.isfinite(self.optimizer.lr):
            raise bad("optimizer.lr", "must be a positive number")
        if self.epochs is not None and self.epochs <= 0:
            raise bad("epochs", "must be positive")
        if not 0.0 <= self.data.eval_fraction < 1.0:
            raise bad("data.eval_fraction", "must be in [0, 1)")
        if self.checkpoint.every < 0 or self.checkpoint.keep < 1:
            raise bad("checkpoint", "needs every >= 0 and keep >= 1")
        if self.dpo.beta <= 0:
            raise bad("dpo.beta", "must be positive")
        if self.method == "dpo" and self.data.packing:
            raise bad("data.packing", "cannot be used with method 'dpo' (pairs are scored whole)")

    @property
    def uses_lora(self) -> bool:
        """Whether the trained parameters are a LoRA adapter (else: the full model)."""
        return self.method in ("lora", "qlora") or (self.method == "dpo" and self.lora.enabled)


def _merge(raw: dict[str, Any], overrides: dict[str, Any], source: str) -> dict[str, Any]:
    """``raw`` with ``{"optimizer.lr": 1e-3}``-style overrides applied (copies, never mutates)."""
    import copy

    out = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        node = out
        *parents, leaf = dotted.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{source}: field '{part}' must be a mapping")
            node = child
        node[leaf] = value
    return out
