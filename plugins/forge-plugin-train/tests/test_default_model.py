"""End to end on the default model (Gemma 3 270M from its GGUF, dequantized to fp32).

50-step LoRA SFT and 50-step LoRA DPO on the small "pirate" data set shipped in tests/data;
the adapter must change greedy answers to *held-out* questions toward the data's style;
``forge serve --lora`` must serve it chosen per request over the OpenAI API, and ``forge serve``
of the merged export must give the same greedy tokens as base+adapter. Marked
``default_model`` (they run in CI; about 10 minutes on 2 cores).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch
from forge_plugin_train.api import start
from forge_plugin_train.spec import RunSpec

pytestmark = pytest.mark.default_model
DATA = Path(__file__).parent / "data"
HELD_OUT = json.loads((DATA / "pirate_heldout.json").read_text())
STYLE = "Arr, matey"


def _greedy(model, tokenizer, prompts: list[str], tokens: int = 8) -> list[list[int]]:
    out = []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            gen = model.generate(**ids, max_new_tokens=tokens, do_sample=False)
        out.append(gen[0, ids["input_ids"].shape[1]:].tolist())
    return out


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("forge-home")


@pytest.fixture(scope="module")
def sft_run(home: Path):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FORGE_HOME", str(home))
        spec = RunSpec.from_dict({"method": "lora", "steps": 50, "batch_size": 2,
                                  "data": {"path": str(DATA / "pirate_sft.jsonl"),
                                           "max_length": 48},
                                  "optimizer": {"lr": 1e-3}, "name": "pirate-sft"})
        yield start(spec, progress=False)


@pytest.fixture()
def forge_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:  # overrides conftest's
    monkeypatch.setenv("FORGE_HOME", str(home))
    return home


def test_sft_adapter_moves_held_out_answers_to_the_data(sft_run) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    losses = [m["loss"] for m in sft_run.metrics()]
    assert len(losses) == 50 and sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses
    tokenizer = AutoTokenizer.from_pretrained(sft_run.info["final"])
    base = AutoModelForCausalLM.from_pretrained(sft_run.info["model_dir"], dtype=torch.float32)
    before = [tokenizer.decode(t) for t in _greedy(base, tokenizer, HELD_OUT)]
    tuned = PeftModel.from_pretrained(base, sft_run.info["final"]).eval()
    after_ids = _greedy(tuned, tokenizer, HELD_OUT)
    after = [tokenizer.decode(t) for t in after_ids]
    assert not any(STYLE in text for text in before), before
    assert sum(STYLE in text for text in after) >= len(HELD_OUT) - 1, after


def test_merged_export_equals_adapter_and_serves(sft_run, forge_home: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``forge serve --lora pirate=<run name>`` on the run's base model: ``base`` and
    ``base:pirate`` chosen per request over the OpenAI API; then ``forge serve --model
    MERGED_DIR`` gives the adapter's greedy tokens. Both servers run exact fp32 weights (the
    merge is fp32; int8 re-quantization would differ between the two); one at a time."""
    from forge_plugin_train.export import export

    lines = list(export(sft_run.id, merge=True))
    merged_dir = sft_run.dir / "export"
    assert "merged safetensors model" in lines[0] and (merged_dir / "config.json").is_file()
    env = {"FORGE_CPU_WEIGHTS": "exact"}
    # Loading 1 GB of fp32 weights can outlast the default 180 s on 2 shared cores.
    monkeypatch.setattr("forge_kernel.testing.server.START_TIMEOUT", 600.0)
    base_dir = sft_run.info["model_dir"]
    with serving(["--model", base_dir, "--lora", "pirate=pirate-sft"], forge_home, env) as api:
        base = api.models.list().data[0].id
        assert api.models.retrieve(f"{base}:pirate").parent == base
        plain = [greedy(api, base, prompt) for prompt in HELD_OUT]
        adapted = [greedy(api, f"{base}:pirate", prompt) for prompt in HELD_OUT]
    assert not any(STYLE in text for text, _ in plain), plain
    assert sum(STYLE in text for text, _ in adapted) >= len(HELD_OUT) - 1, adapted
    with serving(["--model", str(merged_dir)], forge_home, env) as api:
        merged = [greedy(api, api.models.list().data[0].id, prompt) for prompt in HELD_OUT]
    assert merged == adapted


@contextlib.contextmanager
def serving(args: list[str], home: Path, env: dict[str, str]):
    """An openai client of a real ``forge serve ARGS`` (stopped on exit)."""
    import openai

    from forge_kernel.testing.server import start_server

    server = start_server(args, home, env=env)
    try:
        yield openai.OpenAI(base_url=server.base_url, api_key="unused", timeout=300)
    finally:
        server.stop()


def greedy(api, model: str, prompt: str) -> tuple[str, list[str]]:  # noqa: ANN001
    """Text and tokens of 12 greedy tokens."""
    choice = api.completions.create(model=model, prompt=prompt, max_tokens=12, temperature=0,
                                    logprobs=0).choices[0]
    return choice.text, choice.logprobs.tokens


def test_dpo_margin_grows_on_the_default_model(forge_home: Path) -> None:
    spec = RunSpec.from_dict({"method": "dpo", "steps": 50, "batch_size": 2,
                              "lora": {"enabled": True}, "dpo": {"beta": 0.1},
                              "data": {"path": str(DATA / "pirate_dpo.jsonl"),
                                       "max_length": 48},
                              "optimizer": {"lr": 5e-4}, "name": "pirate-dpo"})
    metrics = start(spec, progress=False).metrics()
    assert metrics[0]["loss"] == pytest.approx(0.6931, abs=1e-3)
    first = sum(m["rewards/margin"] for m in metrics[:5]) / 5
    last = sum(m["rewards/margin"] for m in metrics[-5:]) / 5
    assert last > first + 0.5 and metrics[-1]["rewards/accuracy"] >= 0.5, (first, last)
    assert sum(m["loss"] for m in metrics[-5:]) < sum(m["loss"] for m in metrics[:5])
