"""The structured-output seam: per-row token masks in the sampler (rows with and without a
constraint in one batch), the matcher fed every sampled token, compilation once at validation
through the ``constraint`` registry kind, and the engine running constrained requests beside
unconstrained ones. A toy constraint (a fixed token sequence) stands in for a real compiler."""

from __future__ import annotations

import pytest
import torch

from forge_kernel.engine.sampler import SamplingRow, sample
from forge_kernel.engine.types import InvalidRequest, SamplingParams
from forge_kernel.interfaces.constraint import (
    CompiledConstraint,
    Constraint,
    ConstraintCompiler,
    ConstraintSpec,
    compile_constraint,
    mask_words,
)
from forge_kernel.markers import hookimpl

EOS = 2


class Sequence_(Constraint):
    """Allows exactly ``tokens`` in order, then only EOS."""

    def __init__(self, tokens: list[int]) -> None:
        self.tokens, self.pos, self.seen = tokens, 0, []

    def allowed_tokens(self, mask_out: torch.Tensor) -> None:
        mask_out.zero_()
        token = self.tokens[self.pos] if self.pos < len(self.tokens) else EOS
        mask_out[token // 32] = 1 << (token % 32) if token % 32 != 31 else -(2**31)
        return True

    def accept(self, token_id: int) -> bool:
        self.seen.append(token_id)
        expected = self.tokens[self.pos] if self.pos < len(self.tokens) else EOS
        if token_id != expected:
            return False
        self.pos += 1
        return True

    def is_finished(self) -> bool:
        return self.pos >= len(self.tokens)


class Free(Constraint):
    """Allows everything (a lazy constraint before its trigger); records what it was fed."""

    def __init__(self) -> None:
        self.seen = []

    def allowed_tokens(self, mask_out):
        return False

    def accept(self, token_id):
        self.seen.append(token_id)
        return True

    def is_finished(self):
        return False


class Compiled(CompiledConstraint):
    def __init__(self, tokens):
        self.tokens = tokens

    def new_constraint(self, max_tokens=None):
        return Sequence_(list(self.tokens))


class Compiler(ConstraintCompiler):
    compiles = 0

    def __init__(self, tokenizer, vocab_size):
        self.vocab_size = vocab_size

    def compile(self, spec):
        Compiler.compiles += 1
        if spec.kind != "choice":
            raise InvalidRequest(f"{spec.kind} is not supported here", param=spec.param)
        return Compiled([int(t) for t in spec.value[0].split()])


def test_mask_words():
    assert mask_words(1) == 1 and mask_words(32) == 1 and mask_words(33) == 2
    assert mask_words(262144) == 8192


def test_constrained_and_free_rows_batch_together():
    vocab = 100
    logits = torch.randn(3, vocab)
    logits[:, 7] = 50.0  # every unconstrained argmax is 7
    constraints = [Sequence_([63, 95]), None, Sequence_([31]), Free()]  # 31: the sign bit
    rows = [SamplingRow(SamplingParams(temperature=t), [1], [], None, frozenset({EOS}), c)
            for c, t in zip(constraints, (0.0, 0.0, 1.0, 0.0), strict=True)]
    logits = torch.cat([logits, logits[1:2]])
    first = [tok for tok, _ in sample(logits, rows)]
    assert first == [63, 7, 31, 7]
    second = [tok for tok, _ in sample(logits, rows)]
    assert second[0] == 95 and second[2] == EOS and second[3] == 7
    assert constraints[3].seen == [7, 7]
    assert constraints[0].seen == [63, 95] and constraints[2].seen == [31, EOS]


def test_logprobs_stay_the_models_raw_distribution():
    logits = torch.randn(1, 40)
    row = SamplingRow(SamplingParams(temperature=0.0, logprobs=0), [1], [], None,
                      frozenset({EOS}), Sequence_([5]))
    [(token, logprob)] = sample(logits, [row])
    assert token == 5
    assert abs(logprob.logprob - float(torch.log_softmax(logits[0], -1)[5])) < 1e-5


def test_no_allowed_token_ends_the_sequence():
    # A finished constraint allows only EOS; min_tokens bans EOS: the row ends instead of
    # sampling outside the constraint.
    logits = torch.randn(1, 40)
    row = SamplingRow(SamplingParams(temperature=0.0, min_tokens=5), [1], [], None,
                      frozenset({EOS}), Sequence_([]))
    assert sample(logits, [row])[0][0] == EOS


def test_compiled_once_through_the_registry(register_plugin, forge_host):
    class Plugin:
        @staticmethod
        @hookimpl
        def forge_register_constraint_compilers(register):
            register("toy", Compiler)

    register_plugin(Plugin, name="toy-constraints")
    spec = ConstraintSpec("choice", ["5 6"], param="guided_choice")
    before = Compiler.compiles
    compiled = compile_constraint(spec, object(), 100)
    assert compile_constraint(spec, object(), 100) is compiled and spec.compiled is compiled
    assert Compiler.compiles == before + 1
    bad = ConstraintSpec("regex", "a+", param="guided_regex")
    with pytest.raises(InvalidRequest, match="regex") as caught:
        compile_constraint(bad, object(), 100)
    assert caught.value.param == "guided_regex"


def test_no_compiler_installed_is_a_clear_error(forge_host):
    spec = ConstraintSpec("json_object", param="response_format")
    with pytest.raises(InvalidRequest, match="forge-plugin-structured") as caught:
        compile_constraint(spec, object(), 100)
    assert caught.value.param == "response_format"
