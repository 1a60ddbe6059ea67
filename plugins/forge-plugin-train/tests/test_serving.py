"""LoRA adapters at serve time on the engine (tiny random Gemma 3, exact fp32 CPU weights):
``base:adapter`` equals the merged model, a mixed batch equals each request alone, base rows
get no delta, and bad adapters are refused with the file and the reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from forge_plugin_train.adapters import load_adapter, parse_specs
from forge_plugin_train.serving import StepAdapters, attach_adapters

from forge_kernel.engine.builder import build_engine
from forge_kernel.engine.config import EngineConfig
from forge_kernel.engine.types import SamplingParams
from forge_kernel.errors import ConfigError, InvalidRequest

ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PROMPTS = ["Hello there, how are you today? Tell me a story.", "2 + 2 =", "The quick brown fox"]


def make_adapter(base: Path, out: Path, seed: int, targets: list[str], **config) -> Path:
    """A PEFT adapter with random (non-zero) A and B; ``out/merged`` is base + adapter merged."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets,
                                            **config))
    gen = torch.Generator().manual_seed(seed)
    for name, param in peft.named_parameters():
        if "lora_" in name:
            param.data = torch.randn(param.shape, generator=gen) * 0.5
    peft.save_pretrained(out)
    peft.merge_and_unload().save_pretrained(out / "merged")
    for extra in base.iterdir():
        if extra.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(extra, out / "merged")
    return out


@pytest.fixture(scope="module")
def adapters(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return {"a": make_adapter(tiny_model, root / "a", 1, ALL),
            "b": make_adapter(tiny_model, root / "b", 2, ["q_proj", "v_proj", "down_proj"],
                              use_rslora=True)}


@pytest.fixture(autouse=True)
def exact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORGE_CPU_WEIGHTS", "exact")  # fp32 weights: compare with the merge


def engine_for(model: Path, adapters: dict[str, Path] | None = None, **config):
    engine = build_engine(EngineConfig(model=str(model), **config))
    if adapters:
        attach_adapters(engine, adapters)
    return engine


def params(adapter: str | None, tokens: int = 10) -> SamplingParams:
    return SamplingParams(temperature=0, max_tokens=tokens, logprobs=0, ignore_eos=True,
                          adapter=adapter)


def run_alone(engine, prompt: str, adapter: str | None) -> list[tuple[int, float]]:
    out = []
    for delta in engine.generate(engine.tokenizer.encode(prompt), params(adapter)):
        out += [(t, lp.logprob) for t, lp in zip(delta.token_ids, delta.logprobs, strict=True)]
    return out


def run_together(engine, jobs: list[tuple[str, str | None]]) -> list[list[tuple[int, float]]]:
    outs: dict[str, list] = {str(i): [] for i in range(len(jobs))}
    for i, (prompt, adapter) in enumerate(jobs):
        engine.add_request(str(i), engine.tokenizer.encode(prompt), params(adapter))
    while engine.has_unfinished():
        for rid, delta in engine.step():
            outs[rid] += [(t, lp.logprob) for t, lp in
                          zip(delta.token_ids, delta.logprobs or [], strict=True)]
    return [outs[str(i)] for i in range(len(jobs))]


def same(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> None:
    assert [t for t, _ in got] == [t for t, _ in want]
    assert [lp for _, lp in got] == pytest.approx([lp for _, lp in want], abs=1e-4)


def test_base_adapter_equals_the_merged_model(tiny_model: Path, adapters) -> None:
    served = engine_for(tiny_model, adapters)
    base = engine_for(tiny_model)
    for name in ("a", "b"):
        merged = engine_for(adapters[name] / "merged")
        for prompt in PROMPTS:
            with_adapter = run_alone(served, prompt, name)
            same(with_adapter, run_alone(merged, prompt, None))
            assert with_adapter != run_alone(base, prompt, None)  # the adapter does something
    for prompt in PROMPTS:  # base requests on the adapter-serving engine get no delta
        same(run_alone(served, prompt, None), run_alone(base, prompt, None))


def test_mixed_batch_equals_each_request_alone(tiny_model: Path, adapters,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engine_for(tiny_model, adapters)
    jobs = [(p, a) for p in PROMPTS for a in (None, "a", "b")]
    alone = [run_alone(engine, p, a) for p, a in jobs]
    steps: list[set] = []
    begin = StepAdapters.begin_step

    def spy(self, batch) -> None:
        steps.append({c.adapter for c in batch.chunks})
        begin(self, batch)

    monkeypatch.setattr(StepAdapters, "begin_step", spy)
    together = run_together(engine, jobs)
    for got, want in zip(together, alone, strict=True):
        same(got, want)
    assert {None, "a", "b"} in steps  # base and both adapters ran in one step
    assert len(steps) <= 12  # 9 requests x 10 tokens in about 10 steps, not 90


def test_same_prompt_with_another_adapter_is_no_prefix_cache_hit(tiny_model: Path,
                                                                 adapters) -> None:
    engine = engine_for(tiny_model, adapters, block_size=4)
    merged = engine_for(adapters["a"] / "merged", block_size=4)
    prompt = PROMPTS[0]  # several full blocks: the base run would publish them
    run_alone(engine, prompt, None)
    same(run_alone(engine, prompt, "a"), run_alone(merged, prompt, None))


def cached(engine, prompt: str, adapter: str | None) -> tuple[list[int], int]:
    """The greedy tokens and the prompt tokens the prefix cache supplied."""
    tokens, usage = [], None
    for delta in engine.generate(engine.tokenizer.encode(prompt), params(adapter)):
        tokens += delta.token_ids
        usage = delta.usage or usage
    return tokens, usage.cached_tokens


def test_prefix_cache_shares_blocks_within_an_adapter_only(tiny_model: Path, adapters) -> None:
    engine = engine_for(tiny_model, adapters, block_size=4)
    assert engine.kv_cache.supports_prefix_caching
    prompt = PROMPTS[0]
    full = (len(engine.tokenizer.encode(prompt)) - 1) // 4 * 4  # blocks before the last token
    assert full >= 8
    first_a, hit = cached(engine, prompt, "a")
    assert hit == 0
    again_a, hit = cached(engine, prompt, "a")  # same adapter: the prompt's blocks are shared
    assert hit == full and again_a == first_a
    first_b, hit = cached(engine, prompt, "b")  # same tokens, other adapter: no shared block
    assert hit == 0
    base, hit = cached(engine, prompt, None)
    assert hit == 0
    assert len({tuple(first_a), tuple(first_b), tuple(base)}) == 3
    assert cached(engine, prompt, "b") == (first_b, full)
    assert cached(engine, prompt, None) == (base, full)


def test_unknown_adapter_is_refused_naming_model(tiny_model: Path, adapters) -> None:
    engine = engine_for(tiny_model, {"a": adapters["a"]})
    with pytest.raises(InvalidRequest, match="'zzz'") as err:
        engine.add_request("x", [5, 6], params("zzz"))
    assert err.value.param == "model" and err.value.code == "model_not_found"
    with pytest.raises(ConfigError, match="already attached"):
        attach_adapters(engine, {"b": adapters["b"]})


def test_lora_specs_parse_and_refuse_bad_entries() -> None:
    assert parse_specs("a=/x, b=/y/z,") == {"a": "/x", "b": "/y/z"}
    assert parse_specs(None) == {}
    for bad, message in (("a", "NAME=PATH"), ("a=", "NAME=PATH"), ("a:b=/x", "name must"),
                         ("a=/x,a=/y", "twice")):
        with pytest.raises(ConfigError, match=message):
            parse_specs(bad)


def test_bad_adapters_are_refused_with_file_and_reason(tiny_model: Path, adapters,
                                                       tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such directory or training run"):
        load_adapter("x", tmp_path / "missing")
    dora = shutil.copytree(adapters["a"], tmp_path / "dora", ignore=shutil.ignore_patterns("m*"))
    config = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(ConfigError, match="use_dora=True is not supported"):
        load_adapter("x", dora)
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig.from_pretrained(tiny_model)
    config.intermediate_size = 96  # an MLP of another size: the adapter does not fit
    wide = tmp_path / "wide"
    Gemma3ForCausalLM(config).save_pretrained(wide)
    make_adapter(wide, tmp_path / "wide-adapter", 3, ["up_proj"])
    engine = engine_for(tiny_model)
    with pytest.raises(ConfigError, match="trained on another base model"):
        attach_adapters(engine, {"w": tmp_path / "wide-adapter"})
    assert engine.adapters == () and engine.model.lora is None  # nothing half attached
