"""Helpers shared by the engine tests (imported as a plain module: tests/ is on sys.path)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator

import pytest

from forge_kernel.engine.async_engine import AsyncEngine
from forge_kernel.errors import RequestFailed
from forge_kernel.plugins import get_host


def require(*needs: tuple[str, str, str]) -> None:
    """Skip the importing test module unless every ``(kind, name, distribution)`` is installed."""
    registry = get_host().registry
    for kind, name, dist in needs:
        if name not in registry.names(kind):
            pytest.skip(f"{dist} is not installed", allow_module_level=True)


@contextlib.contextmanager
def cpu_weights(precision: str) -> Iterator[None]:
    """Engines built inside keep the cpu backend's weights ``exact`` (float32) or ``int8``."""
    old = os.environ.get("FORGE_CPU_WEIGHTS")
    os.environ["FORGE_CPU_WEIGHTS"] = precision
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("FORGE_CPU_WEIGHTS", None)
        else:
            os.environ["FORGE_CPU_WEIGHTS"] = old


def drain(engine) -> dict[str, dict[int, list[int]]]:
    """Run steps until idle; tokens per request id and choice index (errors re-raised)."""
    out: dict[str, dict[int, list[int]]] = {}
    while engine.has_unfinished():
        for rid, delta in engine.step():
            if isinstance(delta, RequestFailed):
                raise delta
            out.setdefault(rid, {}).setdefault(delta.index, []).extend(delta.token_ids)
    return out


def tokens(engine, prompt, params) -> list[int]:
    """The token ids one synchronous generation produces."""
    return [t for d in engine.generate(prompt, params) for t in d.token_ids]


async def concurrent(engine, prompts, params_list) -> list[list[int]]:
    """Every prompt submitted at once through an :class:`AsyncEngine`; tokens per prompt."""
    aeng = AsyncEngine(engine)
    aeng.start()

    async def one(i):
        return [t async for d in aeng.generate(f"r{i}", prompts[i], params_list[i])
                for t in d.token_ids]

    try:
        return await asyncio.gather(*(one(i) for i in range(len(prompts))))
    finally:
        await aeng.shutdown()
