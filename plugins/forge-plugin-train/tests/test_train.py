"""Training on a tiny random Gemma 3: every method learns, artifacts and run records, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from forge_plugin_train.api import start
from forge_plugin_train.spec import RunSpec
from forge_plugin_train.trainers import LoRA

from forge_kernel.testing.conformance.trainer import TrainerConformance


def _spec(model: Path, path: Path, data: dict | None = None, **extra) -> RunSpec:
    raw = {"model": str(model), "data": {"path": str(path), **(data or {})},
           "steps": 12, "batch_size": 4, "optimizer": {"lr": 3e-3}, **extra}
    return RunSpec.from_dict(raw)


@pytest.mark.parametrize("method", ["sft", "lora", "qlora"])
def test_sft_methods_learn_and_record_the_run(tiny_model: Path, sft_file: Path,
                                              method: str) -> None:
    if method == "qlora":
        pytest.importorskip("bitsandbytes")
    run = start(_spec(tiny_model, sft_file, method=method, data={"eval_fraction": 0.2},
                      checkpoint={"every": 4, "keep": 2}, eval={"every": 4}), progress=False)
    assert run.state == "completed"
    losses = [m["loss"] for m in run.metrics()]
    assert len(losses) == 12 and losses[-1] < losses[0] * 0.9, losses
    info = run.info
    assert info["dataset_hash"].startswith("sha256:") and info["seed"] == 0
    assert info["environment"]["torch"] and info["parent_model"] == str(tiny_model)
    assert 0 < info["eval_examples"] < 24 and info["best_eval_loss"] is not None
    names = sorted(p.name for p in (run.dir / "checkpoints").iterdir())
    assert names == ["best", "step-000008", "step-000012"]  # retention keeps the 2 newest
    final = set(p.name for p in (run.dir / "final").iterdir())
    expected = "adapter_model.safetensors" if method != "sft" else "model.safetensors"
    assert {expected, "tokenizer.json"} <= final
    assert (run.dir / "spec.yaml").is_file()


def test_dpo_raises_the_margin(tiny_model: Path, dpo_file: Path) -> None:
    for lora in (True, False):
        run = start(_spec(tiny_model, dpo_file, method="dpo", steps=10,
                          lora={"enabled": lora}, dpo={"beta": 0.5}), progress=False)
        metrics = run.metrics()
        assert metrics[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference
        assert metrics[-1]["loss"] < metrics[0]["loss"]
        assert metrics[-1]["rewards/margin"] > metrics[0]["rewards/margin"] + 0.1


def test_accumulation_equals_a_big_batch(tiny_model: Path, sft_file: Path) -> None:
    big = start(_spec(tiny_model, sft_file, method="lora", steps=4), progress=False)
    split = start(_spec(tiny_model, sft_file, method="lora", steps=4, batch_size=1,
                        grad_accum=4), progress=False)
    a = [m["loss"] for m in big.metrics()]
    b = [m["loss"] for m in split.metrics()]
    assert a == pytest.approx(b, abs=1e-5)


def test_schedules_and_precision(tiny_model: Path, sft_file: Path) -> None:
    run = start(_spec(tiny_model, sft_file, method="lora", steps=6, precision="bf16",
                      schedule={"name": "cosine", "warmup_steps": 2},
                      gradient_checkpointing=True, optimizer={"name": "sgd", "lr": 0.1}),
                progress=False)
    lrs = [m["lr"] for m in run.metrics()]
    assert lrs[0] == pytest.approx(0.05) and lrs[1] == pytest.approx(0.1)
    assert lrs[2] > lrs[3] > lrs[4] > lrs[5] >= 0


def test_failed_run_is_recorded(tiny_model: Path, tmp_path: Path) -> None:
    from forge_plugin_train.records import DataError
    from forge_plugin_train.runs import list_runs

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": 1}\n')
    with pytest.raises(DataError, match="bad.jsonl:1"):
        start(_spec(tiny_model, bad, method="lora"), progress=False)
    (run,) = list_runs()
    assert run.state == "failed" and "bad.jsonl:1" in run.info["error"]


def test_cli_train_runs_list_and_show(tiny_model: Path, sft_file: Path) -> None:
    from click.testing import CliRunner

    from forge_kernel.cli import main

    runner = CliRunner()
    result = runner.invoke(main, ["train", "--model", str(tiny_model), "--data", str(sft_file),
                                  "--method", "lora", "--steps", "3", "--name", "tiny",
                                  "--no-progress"])
    assert result.exit_code == 0, result.output
    listed = runner.invoke(main, ["runs", "list", "--json"])
    (row,) = json.loads(listed.output)
    assert row["name"] == "tiny" and row["state"] == "completed" and row["step"] == "3/3"
    shown = json.loads(runner.invoke(main, ["runs", "show", "tiny"]).output)
    assert shown["method"] == "lora" and shown["last_metrics"]["step"] == 3
    missing = runner.invoke(main, ["runs", "show", "nope"])
    assert missing.exit_code == 2 and "no training run 'nope'" in missing.output


class TestLoRAConformance(TrainerConformance):
    options = {"steps": 2, "lr": 1e-3, "batch_size": 2}

    @pytest.fixture()
    def trainer(self):
        return LoRA()

    @pytest.fixture()
    def model(self, tiny_model: Path) -> Path:
        return tiny_model

    @pytest.fixture()
    def data(self, sft_file: Path) -> Path:
        return sft_file
