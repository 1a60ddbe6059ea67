"""End to end on the default model (Gemma 3 270M from its GGUF, dequantized to fp32).

50-step LoRA SFT and 50-step LoRA DPO on the small "pirate" data set shipped in tests/data;
the adapter must change greedy answers to *held-out* questions toward the data's style, the
merged export must give the same greedy tokens as base+adapter, and ``forge serve`` must serve
the merged directory. Marked ``default_model`` (they run in CI; about 10 minutes on 2 cores).
"""

from __future__ import annotations

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


def test_merged_export_equals_adapter_and_serves(sft_run, forge_home: Path) -> None:
    from forge_plugin_train.export import export
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lines = list(export(sft_run.id, merge=True))
    merged_dir = sft_run.dir / "export"
    assert "merged safetensors model" in lines[0] and (merged_dir / "config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(str(merged_dir))
    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(sft_run.info["model_dir"], dtype=torch.float32)
    adapter = PeftModel.from_pretrained(base, sft_run.info["final"]).eval()
    assert _greedy(merged, tokenizer, HELD_OUT, 12) == _greedy(adapter, tokenizer, HELD_OUT, 12)

    import httpx

    from forge_kernel.testing.server import start_server

    server = start_server(["--model", str(merged_dir)], forge_home / "serve")
    try:
        reply = httpx.post(server.base_url + "/completions", timeout=120, json={
            "model": server_model(server), "prompt": HELD_OUT[0], "max_tokens": 8,
            "temperature": 0})
        assert reply.status_code == 200, reply.text
        assert STYLE in reply.json()["choices"][0]["text"], reply.json()
    finally:
        server.stop()


def server_model(server) -> str:
    import httpx

    return httpx.get(server.base_url + "/models", timeout=10).json()["data"][0]["id"]


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
