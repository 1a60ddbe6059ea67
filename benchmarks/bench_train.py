"""SFT training throughput: forge-plugin-train vs plain TRL + PEFT, same model/data/LoRA.

    python benchmarks/bench_train.py [--steps 20] [--model default]

Both train a LoRA (r=8, alpha=16, q/k/v/o) with batch 2, max length 48, AdamW lr 1e-3 in fp32
on the pirate data set of the plugin's tests; tokens/s counts non-padding tokens of the steps
after the first two (warm-up). Prints one JSON line per trainer.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "plugins/forge-plugin-train/tests/data/pirate_sft.jsonl"


def ours(model: str, steps: int) -> dict:
    from forge_plugin_train.api import start
    from forge_plugin_train.spec import RunSpec

    spec = RunSpec.from_dict({"model": model, "method": "lora", "steps": steps, "batch_size": 2,
                              "data": {"path": str(DATA), "max_length": 48},
                              "optimizer": {"lr": 1e-3}, "precision": "fp32"})
    metrics = start(spec, progress=False).metrics()[2:]
    tokens = sum(m["tokens"] for m in metrics)
    seconds = sum(m["tokens"] / m["tokens_per_s"] for m in metrics)
    return {"trainer": "forge-plugin-train", "steps": len(metrics),
            "tokens_per_s": tokens / seconds}


def trl_peft(model_dir: str, steps: int) -> dict:
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                 attn_implementation="sdpa")
    marks: list[tuple[float, int]] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            marks.append((time.perf_counter(), state.num_input_tokens_seen))

    config = SFTConfig(output_dir=tempfile.mkdtemp(), max_steps=steps,
                       per_device_train_batch_size=2, learning_rate=1e-3, max_length=48,
                       report_to=[], logging_steps=10**6, save_strategy="no", use_cpu=True,
                       include_num_input_tokens_seen="non_padding", dataloader_num_workers=0)
    trainer = SFTTrainer(model=model, args=config, processing_class=tokenizer,
                         train_dataset=load_dataset("json", data_files=str(DATA))["train"],
                         peft_config=LoraConfig(r=8, lora_alpha=16, task_type="CAUSAL_LM",
                                                target_modules=["q_proj", "k_proj", "v_proj",
                                                                "o_proj"]),
                         callbacks=[Clock()])
    trainer.train()
    (t0, n0), (t1, n1) = marks[1], marks[-1]
    return {"trainer": "trl+peft", "steps": len(marks) - 2, "tokens_per_s": (n1 - n0) / (t1 - t0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    os.environ.setdefault("FORGE_HOME", tempfile.mkdtemp())
    from forge_plugin_train.modeling import resolve_model

    model_dir = str(resolve_model(args.model))
    for result in (ours(model_dir, args.steps), trl_peft(model_dir, args.steps)):
        print(json.dumps({**result, "threads": __import__("torch").get_num_threads()}))


if __name__ == "__main__":
    main()
