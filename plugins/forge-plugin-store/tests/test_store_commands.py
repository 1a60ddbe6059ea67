"""``forge pull/list/show/rm`` as a user runs them, and the ``forge_resolve_model`` seam through
which the kernel finds stored and built-in models without importing this plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import forge_plugin_store.plugin as store_plugin
import pytest
from forge_plugin_store.store import ModelStore, resolve_model

from forge_kernel.engine.config import DEFAULT_MODEL, find_model, locate_model
from forge_kernel.errors import ForgeError, MissingPluginError

pytest.importorskip("forge_plugin_gguf", reason="pull validates models through forge-plugin-gguf")


def _forge(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FORGE_")},
           "FORGE_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "forge_kernel", *args], env=env, text=True,
                          capture_output=True, timeout=300)


def test_pull_list_show_rm_round_trip(tmp_path: Path) -> None:
    home = tmp_path / "home"
    empty = _forge(home, "list", "--json")
    assert (empty.returncode, json.loads(empty.stdout)) == (0, [])
    pulled = _forge(home, "pull", DEFAULT_MODEL, "--name", "tiny")
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.startswith("pulled tiny: gemma3, ")
    (record,) = json.loads(_forge(home, "list", "--json").stdout)
    assert (record["name"], record["architecture"]) == ("tiny", "gemma3")
    shown = _forge(home, "show", "tiny")
    assert shown.returncode == 0, shown.stderr
    assert "architecture" in shown.stdout and "gemma3" in shown.stdout
    assert _forge(home, "rm", "tiny").stdout == "deleted tiny\n"
    missing = _forge(home, "rm", "tiny")
    assert missing.returncode == 1 and "not in the store: tiny" in missing.stderr


def test_kernel_resolves_names_only_through_the_hook(forge_host, register_plugin, tmp_path,
                                                     monkeypatch) -> None:
    monkeypatch.setenv("FORGE_HOME", str(tmp_path))
    model_file = tmp_path / "m.gguf"
    model_file.write_bytes(b"x")
    assert locate_model(forge_host, model_file) == model_file  # paths need no plugin
    with pytest.raises(MissingPluginError, match="pip install forge-plugin-store"):
        locate_model(forge_host, DEFAULT_MODEL)
    assert find_model(forge_host, "no-such-model") is None
    register_plugin(store_plugin, name="store")
    assert locate_model(forge_host, None) == resolve_model(DEFAULT_MODEL)
    assert find_model(forge_host, "no-such-model") is None
    with pytest.raises(ForgeError, match="forge pull no-such-model"):
        locate_model(forge_host, "no-such-model")
    ModelStore().add("broken", "test", lambda staging: staging / "gone.gguf",
                     lambda path: {})
    with pytest.raises(ForgeError, match="is in the store but"):
        find_model(forge_host, "broken")
