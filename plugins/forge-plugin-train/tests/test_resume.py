"""Resume after SIGKILL reproduces the uninterrupted run bit for bit; corrupt checkpoints fail
with a clear error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from forge_plugin_train import checkpoint as ckpt
from forge_plugin_train.api import resume, start
from forge_plugin_train.runs import Run, list_runs
from forge_plugin_train.spec import RunSpec

STEPS = 20


def _spec_file(tmp_path: Path, model: Path, data: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps({
        "model": str(model), "method": "lora", "steps": STEPS, "batch_size": 3, "name": name,
        "data": {"path": str(data)}, "optimizer": {"lr": 3e-3},
        "schedule": {"name": "cosine", "warmup_steps": 3},
        "lora": {"dropout": 0.1},  # dropout draws from the RNG: resume must restore it
        "checkpoint": {"every": 4, "keep": 2}}))
    return path


def _train(spec: Path, env: dict[str, str], *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "forge_plugin_train", "--spec", str(spec),
                             "--no-progress", *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _losses(run: Run) -> list[float]:
    return [m["loss"] for m in run.metrics()]


def test_sigkill_then_resume_matches_uninterrupted(tiny_model: Path, sft_file: Path,
                                                   tmp_path: Path, forge_home: Path) -> None:
    env = {**os.environ, "FORGE_HOME": str(forge_home), "OMP_NUM_THREADS": "1"}
    whole = _train(_spec_file(tmp_path, tiny_model, sft_file, "whole"), env)
    out, _ = whole.communicate(timeout=600)
    assert whole.returncode == 0, out

    victim = _train(_spec_file(tmp_path, tiny_model, sft_file, "victim"), env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        runs = [r for r in list_runs() if r.info.get("name") == "victim"]
        if runs and ckpt.latest(runs[0].dir / "checkpoints") is not None:
            break
        assert victim.poll() is None, victim.communicate()[0]
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    run = Run.load("victim")
    assert run.state == "interrupted"
    killed_at = run.info["step"]
    assert killed_at < STEPS, "the run finished before it could be killed"

    resumed = subprocess.run([sys.executable, "-m", "forge_plugin_train", "--resume", run.id,
                              "--no-progress"], env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    run = Run.load(run.id)
    assert run.state == "completed" and run.info["resumed_from"]
    assert [m["step"] for m in run.metrics()] == list(range(1, STEPS + 1))
    assert _losses(run) == _losses(Run.load("whole"))  # bit for bit, not approximately


def test_corrupt_checkpoint_is_refused(tiny_model: Path, sft_file: Path) -> None:
    spec = RunSpec.from_dict({"model": str(tiny_model), "method": "lora", "steps": 4,
                              "data": {"path": str(sft_file)}, "checkpoint": {"every": 2}})
    run = start(spec, progress=False)
    run.set_state("failed", error="pretend it crashed")
    latest = ckpt.latest(run.dir / "checkpoints")
    weights = latest / ckpt.WEIGHTS
    raw = bytearray(weights.read_bytes())
    raw[-3] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(ckpt.CheckpointError, match="trainable.safetensors: checksum mismatch"):
        resume(run.id, progress=False)
    (latest / ckpt.MANIFEST).unlink()
    with pytest.raises(ckpt.CheckpointError, match="manifest.json is missing"):
        resume(run.id, progress=False)


def test_resume_refuses_completed_and_live_runs(tiny_model: Path, sft_file: Path) -> None:
    from forge_kernel.errors import ConfigError

    spec = RunSpec.from_dict({"model": str(tiny_model), "method": "lora", "steps": 2,
                              "data": {"path": str(sft_file)}, "checkpoint": {"every": 1}})
    run = start(spec, progress=False)
    with pytest.raises(ConfigError, match="already completed"):
        resume(run.id, progress=False)
    run.set_state("running")  # this process is alive
    run.info["pid"] = os.getppid()
    run.save()
    with pytest.raises(ConfigError, match="still running"):
        resume(run.id, progress=False)
