"""``forge quantize SOURCE --method exl2`` through the kernel CLI (forge-plugin-ggml-quant's
command dispatches to the registered ``exl2`` quantizer): a directory the loader opens, and a
clear error without traceback for bad input."""

from __future__ import annotations

import os
import subprocess
import sys

from forge_kernel.modeling import open_model_source


def _forge(args, tmp_path):
    env = {**os.environ, "FORGE_HOME": str(tmp_path / "home"), "NUMBA_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "forge_kernel", "quantize", *args],
                          capture_output=True, text=True, timeout=600, env=env)


def test_forge_quantize_method_exl2(tiny_dirs, tmp_path):
    out = tmp_path / "q"
    result = _forge([str(tiny_dirs["llama"][1]), "--method", "exl2", "--bpw", "5.0", "-o",
                     str(out), "--no-store"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "bits/weight" in result.stdout
    assert " bpw (target 5.0)" in result.stdout  # the quantizer's own report: layer bpw
    source = open_model_source(out)
    assert source.format == "exl2"
    assert sum(t.qtype == "EXL2" for t in source.tensors.values()) == 21


def test_forge_quantize_exl2_bad_input(tiny_dirs, tmp_path):
    result = _forge([str(tiny_dirs["llama"][1]), "--method", "exl2", "--bpw", "12", "-o",
                     str(tmp_path / "q"), "--no-store"], tmp_path)
    assert result.returncode != 0
    assert "out of range" in result.stderr and "Traceback" not in result.stderr
    result = _forge([str(tiny_dirs["llama"][1]), "--method", "exl2", "--calibrate",
                     str(tmp_path / "none.txt"), "-o", str(tmp_path / "q"), "--no-store"],
                    tmp_path)
    assert result.returncode != 0 and "does not exist" in result.stderr
    assert not (tmp_path / "q").exists()
