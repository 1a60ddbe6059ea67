"""``forge quantize`` as a user runs it: dispatch through the registered quantizers, options a
quantizer does not support refused, --calibrate computing an importance matrix with forge's
engine, the output stored with its lineage (``forge show``), and nothing listed after a failed
or interrupted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("forge_plugin_store")
pytest.importorskip("forge_plugin_eval")

TEXT = ("The miller watched the wheel turn while the river carried leaves toward the town. "
        "Merchants sold apples, cloth and honey in the square every morning. ") * 12


def _forge(home, *args):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FORGE_")},
           "FORGE_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "forge_kernel", *args], env=env, text=True,
                          capture_output=True, timeout=600)


def test_calibrated_quantize_is_stored_with_lineage(hf_dir, tmp_path):
    from forge_plugin_ggml_quant.imatrix import load_imatrix

    directory, _ = hf_dir
    text = tmp_path / "calib.txt"
    text.write_text(TEXT)
    out, imatrix = tmp_path / "tiny-Q4_K_M.gguf", tmp_path / "imatrix.gguf"
    run = _forge(tmp_path / "home", "quantize", str(directory), "--type", "Q4_K_M", "-o",
                 str(out), "--calibrate", str(text), "--save-imatrix", str(imatrix),
                 "--name", "tiny-q4")
    assert run.returncode == 0, run.stderr
    assert "bits/weight" in run.stdout and "stored as 'tiny-q4'" in run.stdout
    import gguf

    assert gguf.GGUFReader(out).fields["quantize.imatrix.entries_count"].contents() == 14
    stats = load_imatrix(imatrix)
    assert stats["blk.0.attn_q.weight"].shape == (256,)
    down = stats["blk.1.ffn_down.weight"]
    assert down.shape == (512,) and down.min() > 0
    (record,) = json.loads(_forge(tmp_path / "home", "list", "--json").stdout)
    lineage = record["lineage"]
    assert (lineage["method"], lineage["type"]) == ("ggml", "Q4_K_M")
    assert lineage["source"] == str(directory.resolve())
    assert lineage["imatrix"] == f"calibration:{text.resolve()}"
    assert lineage["types"]["Q6_K"] > 0 and lineage["types"]["Q4_K"] > 0
    shown = _forge(tmp_path / "home", "show", "tiny-q4")
    assert shown.returncode == 0, shown.stderr
    assert "Lineage" in shown.stdout and "calibration:" in shown.stdout


def test_bad_method_type_and_options_are_refused(hf_dir, tmp_path):
    directory, _ = hf_dir
    home = tmp_path / "home"
    cases = [(["--method", "nope"], "unknown --method 'nope' (installed quantizers: "),
             (["--type", "Q9_9"], "unknown --type 'Q9_9'"),
             (["--bpw", "4.0"], "the 'ggml' quantizer does not support 'bpw'"),
             (["--imatrix", str(tmp_path / "missing.dat")], "missing.dat does not exist")]
    for extra, message in cases:
        run = _forge(home, "quantize", str(directory), "-o", str(tmp_path / "x.gguf"), *extra)
        assert run.returncode != 0 and message in run.stderr, (extra, run.stderr)
    assert not (tmp_path / "x.gguf").exists()
    assert json.loads(_forge(home, "list", "--json").stdout) == []


def test_interrupted_run_lists_nothing(hf_dir, tmp_path, monkeypatch):
    from click.testing import CliRunner
    from forge_plugin_ggml_quant import convert
    from forge_plugin_ggml_quant.cli import quantize_command
    from forge_plugin_store.store import ModelStore

    directory, _ = hf_dir
    real, calls = convert._encode, []

    def encode(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(convert, "_encode", encode)
    monkeypatch.setenv("FORGE_HOME", str(tmp_path / "home"))
    out = tmp_path / "out" / "tiny.gguf"
    result = CliRunner().invoke(quantize_command, [str(directory), "--type", "Q8_0", "-o",
                                                   str(out)])
    assert result.exit_code != 0 and len(calls) == 3
    assert list((tmp_path / "out").iterdir()) == []
    store = ModelStore(tmp_path / "home" / "models")
    assert list(store.records()) == []
    assert not store.root.exists() or list(store.root.iterdir()) == []
