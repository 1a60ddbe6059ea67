"""Shared fixtures: tiny random transformers models saved as Hugging Face directories, and
their EXL2 conversions (built once per session: the conversion is the slow part)."""

from __future__ import annotations

from pathlib import Path

import pytest
from forge_plugin_exl2.quantizer import CALIBRATION

CALIB_WINDOWS = 4
CTX = 128


def held_out_ids(tokenizer, count: int = 3, length: int = 40) -> list[list[int]]:
    """Prompts from the end of the calibration text's token stream, past what calibration
    used (``CALIB_WINDOWS * CTX`` tokens)."""
    ids = tokenizer.encode(CALIBRATION.read_text(), add_special_tokens=False)
    start = CALIB_WINDOWS * CTX
    assert len(ids) >= start + count * length
    return [[tokenizer.bos_id, *ids[start + i * length:start + (i + 1) * length]]
            for i in range(count)]


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    """``{case: (hf_model, source_dir)}`` for the architectures EXL2 is tested on."""
    from forge_plugin_models.testing import make_hf, save_safetensors

    root: Path = tmp_path_factory.mktemp("exl2-src")
    out = {}
    for case in ("gemma3", "llama", "qwen2"):
        hf = make_hf(case)
        out[case] = (hf, save_safetensors(hf, root / case))
    return out


@pytest.fixture(scope="session")
def tiny_exl2(tiny_dirs, tmp_path_factory):
    """``{(case, bpw): output_dir}``, converted on first use."""
    from forge_plugin_exl2.quantizer import convert_model

    root: Path = tmp_path_factory.mktemp("exl2-out")
    cache: dict = {}

    def get(case: str, bpw: float) -> Path:
        if (case, bpw) not in cache:
            out = root / f"{case}-{bpw}"
            convert_model(tiny_dirs[case][1], out, bpw=bpw, max_windows=CALIB_WINDOWS, ctx=CTX)
            cache[case, bpw] = out
        return cache[case, bpw]

    return get
