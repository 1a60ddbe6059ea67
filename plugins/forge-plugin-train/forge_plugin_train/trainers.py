"""The ``Trainer`` implementations registered with forge: ``sft``, ``lora``, ``qlora``, ``dpo``.

Each is the run-spec pipeline with its method fixed; ``options`` are run-spec fields, nested
(``{"optimizer": {"lr": 1e-3}}``) or dotted (``{"optimizer.lr": 1e-3}``); ``lr`` is accepted as
a shorthand for ``optimizer.lr``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from forge_kernel.interfaces.trainer import Trainer

ALIASES = {"lr": "optimizer.lr", "beta": "dpo.beta", "r": "lora.r"}


class SpecTrainer(Trainer):
    """Runs :func:`forge_plugin_train.api.start` with ``method = self.name``."""

    name = "sft"

    def train(self, model: Path, data: Path, output: Path, options: dict[str, Any],
              progress: Callable[[int, int, dict[str, float]], None] | None = None) -> Path:
        """Train ``model`` on ``data``; the final adapter/weights are copied to ``output``."""
        from forge_plugin_train.api import start
        from forge_plugin_train.spec import RunSpec

        nested = {k: v for k, v in options.items() if "." not in k and k not in ALIASES}
        dotted = {ALIASES.get(k, k): v for k, v in options.items() if k not in nested}
        raw = {**nested, "model": str(model), "method": self.name, "output": str(output)}
        raw["data"] = {**raw.get("data", {}), "path": str(data)}
        spec = RunSpec.from_dict(raw, source="trainer options", overrides=dotted)
        start(spec, progress=progress if progress is not None else False)
        return Path(output)


class FullSFT(SpecTrainer):
    """Full fine-tuning: every weight trained (supervised next-token loss)."""

    name = "sft"


class LoRA(SpecTrainer):
    """Supervised fine-tuning of a PEFT LoRA adapter; the base stays frozen."""

    name = "lora"


class QLoRA(SpecTrainer):
    """LoRA over a 4-bit NF4 base (bitsandbytes ``Linear4bit``; runs on CPU with bnb >= 0.46)."""

    name = "qlora"


class DPO(SpecTrainer):
    """Direct Preference Optimization on prompt/chosen/rejected records."""

    name = "dpo"


TRAINERS: tuple[type[SpecTrainer], ...] = (FullSFT, LoRA, QLoRA, DPO)
