"""2-process gloo DDP and FSDP (torchrun on CPU) follow the 1-process loss curve.

Tolerance 1e-4 absolute: the ranks' partial sums are added in a different order than one
process adds them (float32), nothing else differs (same examples per step, same normalization).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from forge_plugin_train.runs import Run

STEPS = 6


def _run(tmp_path: Path, model: Path, data: Path, env: dict, name: str, nproc: int,
         strategy: str, method: str) -> list[float]:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(json.dumps({"model": str(model), "method": method, "steps": STEPS,
                                "name": name, "batch_size": 4 // nproc,
                                "data": {"path": str(data)}, "optimizer": {"lr": 3e-3},
                                "distributed": {"strategy": strategy}}))
    if nproc == 1:
        cmd = [sys.executable, "-m", "forge_plugin_train", "--spec", str(spec)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
               "--standalone", "-m", "forge_plugin_train", "--spec", str(spec)]
    done = subprocess.run(cmd + ["--no-progress"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = Run.load(name)
    assert run.state == "completed"
    return [m["loss"] for m in run.metrics()]


@pytest.mark.parametrize(("method", "strategy"), [("lora", "ddp"), ("sft", "fsdp")])
def test_two_processes_match_one(tiny_model: Path, sft_file: Path, tmp_path: Path,
                                 forge_home: Path, method: str, strategy: str) -> None:
    env = {**os.environ, "FORGE_HOME": str(forge_home), "OMP_NUM_THREADS": "1"}
    single = _run(tmp_path, tiny_model, sft_file, env, "one", 1, "none", method)
    double = _run(tmp_path, tiny_model, sft_file, env, "two", 2, strategy, method)
    assert len(single) == len(double) == STEPS
    assert double == pytest.approx(single, abs=1e-4)
    assert single[-1] < single[0]
