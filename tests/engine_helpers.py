"""Helpers shared by the engine tests (imported as a plain module: tests/ is on sys.path)."""

from __future__ import annotations

from forge_kernel.engine.engine import RequestFailed


def drain(engine) -> dict[str, dict[int, list[int]]]:
    """Run steps until idle; tokens per request id and choice index (errors re-raised)."""
    out: dict[str, dict[int, list[int]]] = {}
    while engine.has_unfinished():
        for rid, delta in engine.step():
            if isinstance(delta, RequestFailed):
                raise delta
            out.setdefault(rid, {}).setdefault(delta.index, []).extend(delta.token_ids)
    return out
