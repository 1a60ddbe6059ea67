"""SFT training throughput: forge-plugin-train vs plain TRL + PEFT, same model/data/LoRA.

    python benchmarks/bench_train.py [--steps 20] [--repeats 3] [--model default]

Both train a LoRA (r=8, alpha=16, q/k/v/o) with batch 2, max length 48, AdamW lr 1e-3 in fp32
on the pirate data set of the plugin's tests (prompt tokens masked out of the loss in both).
Both are timed the same way: wall clock between the ends of optimizer steps (a callback per
step: TRL's ``on_step_end``, our ``progress``), from the end of step 2 to the end of the last
step, so model loading and the first two (warm-up) steps are left out; tokens are the
non-padding tokens of those steps. The two trainers run back to back in one process (same
threads), ``--repeats`` times, alternating which goes first, because the CPU is shared.
Prints one JSON line per run, then one summary line (median of each).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "plugins/forge-plugin-train/tests/data/pirate_sft.jsonl"
LORA = {"r": 8, "alpha": 16, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}


def _rate(marks: list[tuple[float, float]]) -> tuple[int, float]:
    """``(steps, tokens/s)`` from ``(time, cumulative tokens)`` at each step end, step 3 on."""
    (t0, n0), (t1, n1) = marks[1], marks[-1]
    return len(marks) - 2, (n1 - n0) / (t1 - t0)


def ours(model_dir: str, steps: int) -> dict:
    from forge_plugin_train.api import start
    from forge_plugin_train.spec import RunSpec

    spec = RunSpec.from_dict({"model": model_dir, "method": "lora", "steps": steps,
                              "batch_size": 2, "lora": LORA,
                              "data": {"path": str(DATA), "max_length": 48},
                              "optimizer": {"lr": 1e-3}, "precision": "fp32"})
    marks: list[tuple[float, float]] = []
    seen = [0.0]

    def clock(step: int, total: int, metrics: dict) -> None:  # noqa: ARG001
        seen[0] += metrics["tokens"]
        marks.append((time.perf_counter(), seen[0]))

    start(spec, progress=clock)
    done, rate = _rate(marks)
    return {"trainer": "forge-plugin-train", "steps": done, "tokens_per_s": round(rate, 1)}


def trl_peft(model_dir: str, steps: int) -> dict:
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                 attn_implementation="sdpa")
    marks: list[tuple[float, float]] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            marks.append((time.perf_counter(), float(state.num_input_tokens_seen)))

    config = SFTConfig(output_dir=tempfile.mkdtemp(), max_steps=steps,
                       per_device_train_batch_size=2, learning_rate=1e-3, max_length=48,
                       report_to=[], logging_steps=10**6, save_strategy="no", use_cpu=True,
                       include_num_input_tokens_seen="non_padding", dataloader_num_workers=0)
    trainer = SFTTrainer(model=model, args=config, processing_class=tokenizer,
                         train_dataset=load_dataset("json", data_files=str(DATA))["train"],
                         peft_config=LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"],
                                                task_type="CAUSAL_LM",
                                                target_modules=LORA["target_modules"]),
                         callbacks=[Clock()])
    trainer.train()
    done, rate = _rate(marks)
    return {"trainer": "trl+peft", "steps": done, "tokens_per_s": round(rate, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    os.environ.setdefault("FORGE_HOME", tempfile.mkdtemp())
    import torch
    from forge_plugin_train.modeling import resolve_model

    model_dir = str(resolve_model(args.model))  # the GGUF dequantized once, for both
    results: dict[str, list[float]] = {"forge-plugin-train": [], "trl+peft": []}
    for repeat in range(args.repeats):
        order = (ours, trl_peft) if repeat % 2 == 0 else (trl_peft, ours)
        for bench in order:
            load = os.getloadavg()[0]
            result = bench(model_dir, args.steps)
            results[result["trainer"]].append(result["tokens_per_s"])
            print(json.dumps({**result, "repeat": repeat, "threads": torch.get_num_threads(),
                              "loadavg_1m": round(load, 1)}), flush=True)
    print(json.dumps({"median_tokens_per_s": {k: statistics.median(v)
                                              for k, v in results.items()},
                      "runs": results, "cpus": os.cpu_count(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
