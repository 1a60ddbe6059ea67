"""``TrainerConformance``: the contract of :class:`~forge_kernel.interfaces.trainer.Trainer`.

Usage::

    class TestLoRA(TrainerConformance):
        options = {"steps": 2, "lr": 1e-3}

        @pytest.fixture()
        def trainer(self):
            return LoRATrainer()

        @pytest.fixture()
        def model(self, tmp_path):     # a tiny model directory or file
            ...

        @pytest.fixture()
        def data(self, tmp_path):      # a tiny data set file
            ...
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from forge_kernel.interfaces.trainer import Trainer


class TrainerConformance:
    """Subclass and provide ``trainer``, ``model`` and ``data`` fixtures; set ``options``."""

    options: dict[str, Any] = {}

    @pytest.fixture()
    def trainer(self) -> Trainer:
        raise NotImplementedError("provide a `trainer` fixture")

    @pytest.fixture()
    def model(self) -> Path:
        raise NotImplementedError("provide a `model` fixture (path to a tiny model)")

    @pytest.fixture()
    def data(self) -> Path:
        raise NotImplementedError("provide a `data` fixture (path to a tiny data set)")

    def test_is_a_trainer(self, trainer: Trainer) -> None:
        assert isinstance(trainer, Trainer)
        assert isinstance(trainer.name, str) and trainer.name

    def test_trains_and_reports_progress(self, trainer: Trainer, model: Path, data: Path,
                                         tmp_path: Path) -> None:
        reports: list[tuple[int, int, dict[str, float]]] = []
        output = trainer.train(model, data, tmp_path / "out", dict(self.options),
                               progress=lambda s, t, m: reports.append((s, t, dict(m))))
        assert Path(output).exists(), "train() must return the path it wrote"
        assert reports, "progress was never called"
        steps = [s for s, _, _ in reports]
        assert steps == sorted(steps) and reports[-1][0] == reports[-1][1]
        for _, _, metrics in reports:
            assert all(math.isfinite(v) for v in metrics.values()), metrics
