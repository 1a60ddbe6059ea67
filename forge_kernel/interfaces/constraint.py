"""Token constraints: structured output as per-step masks (docs/plugins/interfaces.md,
docs/structured-output.md)."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from forge_kernel.interfaces.tokenizer import Tokenizer

KINDS = ("json_object", "json_schema", "regex", "choice", "grammar")
"""Constraint kinds an endpoint may ask for; a compiler may support a subset."""


@dataclass(slots=True, eq=False)
class ConstraintSpec:
    """What a request's output must match; ``value`` per kind: docs/plugins/interfaces.md."""

    kind: str
    value: Any = None
    param: str = "response_format"
    """The request field errors name (``response_format``, ``guided_regex``, ``tools``...)."""
    compiler: str | None = None
    """Registered compiler to use; ``None``: the only one installed (or the first by name)."""
    compiled: CompiledConstraint | None = field(default=None, repr=False)
    """Set by :func:`compile_constraint` (so repeated validation compiles once)."""


def mask_words(vocab_size: int) -> int:
    """Length of a mask row for ``vocab_size`` tokens."""
    return (vocab_size + 31) // 32


class Constraint(ABC):
    """The matcher of one sequence: which tokens may come next, fed one token per step."""

    @abstractmethod
    def allowed_tokens(self, mask_out: torch.Tensor) -> bool:
        """Write the allowed next tokens into ``mask_out`` (``int32 [mask_words(V)]``, zeroed)
        and return ``True``, or ``False`` when every token is allowed this step."""

    @abstractmethod
    def accept(self, token_id: int) -> bool:
        """Advance by the sampled token; ``False`` if the token was not allowed (the state is
        then unchanged)."""

    @abstractmethod
    def is_finished(self) -> bool:
        """True once the output is complete (only end-of-sequence tokens remain allowed)."""


class CompiledConstraint(ABC):
    """A compiled spec, shared by every choice of a request (and cached across requests)."""

    @abstractmethod
    def new_constraint(self, max_tokens: int | None = None) -> Constraint:
        """A fresh matcher; ``max_tokens`` lets it close the output before the budget ends."""


class ConstraintCompiler(ABC):
    """Compiles specs for one tokenizer. Factory: ``factory(tokenizer, vocab_size)``; built once
    per model, so per-vocabulary tables are computed once."""

    @abstractmethod
    def compile(self, spec: ConstraintSpec) -> CompiledConstraint:
        """Compile ``spec``; raise :class:`~forge_kernel.errors.InvalidRequest` (with
        ``param=spec.param``) naming what is unsupported or malformed."""


_compilers: dict[tuple[int, str], tuple[Any, ConstraintCompiler]] = {}
_lock = threading.Lock()


def _compiler(name: str | None, tokenizer: Tokenizer, vocab_size: int,
              param: str) -> ConstraintCompiler:
    from forge_kernel.errors import InvalidRequest
    from forge_kernel.plugins import get_host

    registry = get_host().registry
    names = registry.names("constraint")
    if not names:
        raise InvalidRequest(f"{param}: structured output needs a constraint compiler plugin; "
                             f"install forge-plugin-structured", param=param,
                             code="unsupported_parameter")
    chosen = name or names[0]
    if chosen not in names:
        raise InvalidRequest(f"no constraint compiler named {chosen!r} (available: "
                             f"{', '.join(names)})", param=param)
    key = (id(tokenizer), chosen)
    with _lock:  # the tokenizer is kept in the entry, so its id cannot be reused meanwhile
        entry = _compilers.get(key)
        if entry is None:
            entry = (tokenizer, registry.create("constraint", chosen, tokenizer, vocab_size))
            _compilers[key] = entry
    return entry[1]


def compile_constraint(spec: ConstraintSpec, tokenizer: Tokenizer,
                       vocab_size: int) -> CompiledConstraint:
    """Compile ``spec`` (compiler built once per tokenizer) into ``spec.compiled``;
    ``InvalidRequest`` for unknown kinds and what the compiler refuses."""
    from forge_kernel.errors import InvalidRequest

    if spec.compiled is not None:
        return spec.compiled
    if spec.kind not in KINDS:
        raise InvalidRequest(f"unknown constraint kind {spec.kind!r} (one of "
                             f"{', '.join(KINDS)})", param=spec.param)
    spec.compiled = _compiler(spec.compiler, tokenizer, vocab_size, spec.param).compile(spec)
    return spec.compiled
