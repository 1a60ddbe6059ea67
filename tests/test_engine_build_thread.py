"""build_engine loads on a short-lived thread of its own (see the comment in it: OpenMP worker pools
left behind on the caller's thread would make the AsyncEngine thread's kernels sleep)."""

from __future__ import annotations

import threading

import pytest

from forge_kernel.engine import builder
from forge_kernel.errors import ConfigError


def test_loading_runs_off_the_callers_thread(monkeypatch):
    seen = []

    def fake_build(config):
        seen.append(threading.current_thread())
        return "engine"

    monkeypatch.setattr(builder, "_build", fake_build)
    assert builder.build_engine() == "engine"
    assert seen and seen[0] is not threading.current_thread()
    assert not seen[0].is_alive()  # its OpenMP pools went with it


def test_errors_reach_the_caller():
    with pytest.raises(ConfigError, match="max_batch_size"):
        builder.build_engine(builder.EngineConfig(max_batch_size=0))
