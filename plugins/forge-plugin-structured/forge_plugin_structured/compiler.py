"""The ``llguidance`` constraint compiler: one per model, with an LRU cache of compiled
grammars keyed by the normalized request (kind + canonical JSON of the value)."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from forge_kernel.engine.types import InvalidRequest
from forge_kernel.interfaces.constraint import (
    CompiledConstraint,
    ConstraintCompiler,
    ConstraintSpec,
)
from forge_plugin_structured import config, grammars
from forge_plugin_structured.limits import cap_strings, token_classes
from forge_plugin_structured.matcher import CompiledGrammar, Limits
from forge_plugin_structured.vocab import ll_tokenizer

_DIGIT_CAPPED = ("json_object", "json_schema", "grammar")
"""Kinds whose output may hold JSON numbers (grammars may embed ``%json``); a regex or a
choice says exactly what it allows."""


def grammar_for(spec: ConstraintSpec, flexible: bool,
                max_string_length: int = 0) -> tuple[str, str | None]:
    """``(grammar, trigger)`` for a spec; ``trigger`` is set for lazy grammars only.

    A ``grammar`` spec's value is grammar text, or ``{"grammar": text, "trigger": text}``
    for a grammar enforced only once the trigger appears (used by ``tool_choice="auto"``).
    """
    kind, value, param = spec.kind, spec.value, spec.param
    if kind == "json_object":
        return grammars.json_schema_grammar({"type": "object"}, param, flexible), None
    if kind == "json_schema":
        if isinstance(value, dict):  # refused with a clear message below if it is not
            value = cap_strings(value, max_string_length)
        return grammars.json_schema_grammar(value, param, flexible), None
    if kind == "regex":
        return grammars.regex_grammar(value, param), None
    if kind == "choice":
        return grammars.choice_grammar(value, param), None
    if kind == "grammar":
        if isinstance(value, dict):
            trigger = value.get("trigger")
            if not isinstance(trigger, str) or not trigger:
                raise InvalidRequest(f"{param}: a lazy grammar needs a non-empty trigger",
                                     param=param)
            return grammars.text_grammar(value.get("grammar"), param), trigger
        return grammars.text_grammar(value, param), None
    raise InvalidRequest(f"{param}: constraint kind {kind!r} is not supported", param=param)


class LLGuidanceCompiler(ConstraintCompiler):
    """Compiles specs to llguidance grammars for one tokenizer (its token table is built once,
    here). llguidance builds its parser lazily, so "compiling" is validating the grammar (~1 ms
    for a typical schema); the cache still saves that and the JSON-schema translation."""

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        self.tokenizer = ll_tokenizer(tokenizer, vocab_size)
        self.vocab_size = vocab_size
        self._cache: OrderedDict[str, CompiledGrammar] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def _limits(self, kind: str) -> Limits | None:
        cfg = config.CONFIG
        digits = cfg.max_number_digits if kind in _DIGIT_CAPPED else 0
        if digits <= 0 and cfg.close_reserve <= 0:
            return None
        return Limits(token_classes(self.tokenizer, self.vocab_size), max(0, digits),
                      max(0, cfg.close_reserve))

    def compile(self, spec: ConstraintSpec) -> CompiledConstraint:
        cfg = config.CONFIG
        flexible, max_len = cfg.whitespace_flexible, cfg.max_string_length
        try:
            key = json.dumps([spec.kind, spec.value, flexible, max_len, cfg.max_number_digits,
                              cfg.close_reserve], sort_keys=True)
        except (TypeError, ValueError):
            raise InvalidRequest(f"{spec.param}: the constraint must be JSON data",
                                 param=spec.param) from None
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
                self.hits += 1
                return found
        grammar, trigger = grammar_for(spec, flexible, max_len)  # outside the lock: slow-ish
        compiled = CompiledGrammar(self.tokenizer, grammar, trigger, self._limits(spec.kind))
        with self._lock:
            self.misses += 1
            self._cache[key] = compiled
            while len(self._cache) > max(1, config.CONFIG.cache_size):
                self._cache.popitem(last=False)
        return compiled
