"""Trainers: fine-tune a model (SFT, LoRA, DPO)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Trainer(ABC):
    """Fine-tunes a model and writes the result. Factory: ``factory()``."""

    name: str

    @abstractmethod
    def train(
        self,
        model: Path,
        data: Path,
        output: Path,
        options: dict[str, Any],
        progress: Callable[[int, int, dict[str, float]], None] | None = None,
    ) -> Path:
        """Train on ``data``; ``progress(step, total_steps, metrics)`` reports loss etc."""
