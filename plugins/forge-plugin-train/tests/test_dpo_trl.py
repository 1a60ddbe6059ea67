"""Our DPO loss equals TRL's ``DPOTrainer`` loss on the same batch (within 1e-5)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from forge_plugin_train.data import TrainData
from forge_plugin_train.losses import dpo_loss_sum
from forge_plugin_train.modeling import load_tokenizer
from forge_plugin_train.spec import RunSpec

trl = pytest.importorskip("trl")


def test_dpo_loss_matches_trl(tiny_model: Path, dpo_file: Path, tmp_path: Path) -> None:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(tiny_model)
    torch.manual_seed(1)
    policy = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    with torch.no_grad():  # make policy and reference differ, so the loss is not just log 2
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    spec = RunSpec.from_dict({"data": {"path": str(dpo_file), "shuffle": False},
                              "method": "dpo", "dpo": {"beta": 0.3}})
    ours = TrainData(spec, tokenizer)
    import json

    raw = [json.loads(line) for line in dpo_file.read_text().splitlines()][:4]
    config = trl.DPOConfig(output_dir=str(tmp_path / "trl"), beta=0.3, report_to=[],
                           per_device_train_batch_size=4, max_length=None,
                           use_cpu=True, dataloader_num_workers=0)
    trainer = trl.DPOTrainer(model=policy, ref_model=reference, args=config,
                             train_dataset=Dataset.from_list(raw), processing_class=tokenizer)
    rows = [trainer.train_dataset[i] for i in range(4)]
    trl_batch = trainer.data_collator(rows)
    # the same token ids through our collator and loss
    batch = ours.collate([{k: r[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")}
                          for r in rows])
    assert torch.equal(trl_batch["input_ids"], batch["input_ids"])
    assert torch.equal(trl_batch["completion_mask"], batch["completion_mask"])
    loss_sum, pairs, _ = dpo_loss_sum(policy.eval(), reference, batch, beta=0.3)
    trainer.model.eval()
    trl_loss = trainer.compute_loss(trainer.model, trl_batch)
    assert float(loss_sum) / pairs == pytest.approx(float(trl_loss), abs=1e-5)
    assert abs(float(trl_loss) - 0.6931) > 1e-3
