"""Structured output and tool calling for forge: request fields -> llguidance grammars ->
per-step token masks held by the engine (see ``docs/structured-output.md``)."""
