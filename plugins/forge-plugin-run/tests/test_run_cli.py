"""``forge run``: the command is registered by this plugin, refuses clearly without a compute
backend, and reads the same configuration as ``forge serve`` (a real tiny Llama GGUF through
the installed cpu/gguf/models/kv-naive/scheduler plugins, in a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import forge_plugin_run.plugin as run_plugin
import pytest


def test_run_is_added_by_the_plugin(forge_cli, register_plugin) -> None:
    missing = forge_cli("run", "hello there")  # the empty host: the kernel's install hint
    assert missing.exit_code == 2 and "pip install forge-plugin-run" in missing.stderr
    register_plugin(run_plugin, name="run")
    assert "Generate text with MODEL" in forge_cli("run", "--help").stdout


def test_run_without_backend_plugin_names_what_to_install(forge_cli, register_plugin) -> None:
    register_plugin(run_plugin, name="run")
    result = forge_cli("run", "hello there")
    assert result.exit_code != 0 and result.exception is None
    assert "pip install forge-plugin-cpu" in result.stderr


def test_run_honours_the_config_file(tmp_path: Path) -> None:
    """`forge run` reads the same configuration as `forge serve`: the file's model and engine
    settings apply, flags override them."""
    testing = pytest.importorskip("forge_plugin_models.testing")
    model = testing.write_gguf(testing.make_hf("llama"), tmp_path / "tiny-llama.gguf")
    config = tmp_path / "forge.toml"
    config.write_text(f'model = "{model}"\nkv_cache = "no-such-cache"\nthreads = 1\n')
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FORGE_")},
           "FORGE_CONFIG": str(config), "FORGE_HOME": str(tmp_path / "home")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "forge_kernel", "run", *args], env=env,
                              capture_output=True, text=True, timeout=300)

    refused = run("Hello", "--max-tokens", "2")  # model and kv_cache from the file
    assert refused.returncode == 1 and "no-such-cache" in refused.stderr, refused.stderr
    ok = run("Hello", "--max-tokens", "2", "--kv-cache", "naive", "--verbose")
    assert ok.returncode == 0, ok.stderr
    assert "eval count:           1 token(s)" in ok.stderr  # 2 tokens: 1 after the prefill
    assert ok.stdout.strip(), "the generated text goes to stdout"
    assert "eval count" not in ok.stdout  # statistics go to stderr only
