"""Fixtures: one engine on the default model for the whole module run (loading takes ~10 s)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def engine():
    from forge_kernel.engine.builder import build_engine

    return build_engine()
