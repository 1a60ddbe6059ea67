"""Helpers of the engine-level tests (a plain module: tests/ is on sys.path)."""

from __future__ import annotations


def run_all(engine, requests) -> list[tuple[str, str | None]]:
    """Queue every ``(prompt_ids, params)`` at once (so they share steps), run to the end;
    ``(text, finish_reason)`` per request (choice 0)."""
    texts = [""] * len(requests)
    finish: list[str | None] = [None] * len(requests)
    for i, (prompt, params) in enumerate(requests):
        engine.add_request(f"r{i}", prompt, params)
    while engine.has_unfinished():
        for rid, delta in engine.step():
            i = int(rid[1:])
            texts[i] += delta.text
            finish[i] = delta.finish_reason or finish[i]
    return list(zip(texts, finish, strict=True))
