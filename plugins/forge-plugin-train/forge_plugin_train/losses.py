"""Loss functions: token-level SFT cross-entropy sums and the DPO sigmoid loss.

Both return *sums* plus the count to divide by, so gradient accumulation and data-parallel
ranks can divide by the count of the whole optimizer step: the gradient is then the same as one
big batch's, whatever the split (see :mod:`forge_plugin_train.loop`).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F

from forge_plugin_train.data import IGNORE


def _logits(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 use_cache=False).logits


def token_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) per position, computed in fp32 (``targets`` already shifted)."""
    logits = logits.float()
    safe = targets.clamp(min=0)
    return torch.gather(logits.log_softmax(-1), 2, safe.unsqueeze(-1)).squeeze(-1)


def sft_loss_sum(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over trained (label != -100) positions, and their count."""
    logits = _logits(model, batch)[:, :-1]
    labels = batch["labels"][:, 1:]
    loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1),
                           ignore_index=IGNORE, reduction="sum")
    return loss, int((labels != IGNORE).sum())


def sequence_logps(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum of completion-token log-probs per row (``completion_mask`` marks the completion)."""
    logits = _logits(model, batch)[:, :-1]
    mask = batch["completion_mask"][:, 1:].float()
    return (token_logps(logits, batch["input_ids"][:, 1:]) * mask).sum(-1)


def reference_logps(policy: Any, reference: Any | None,
                    batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference log-probs of (chosen, rejected): precomputed in the batch, a frozen reference
    model, or the policy with its LoRA adapter switched off."""
    if "ref_chosen_logps" in batch:
        return batch["ref_chosen_logps"], batch["ref_rejected_logps"]
    with torch.no_grad():
        if reference is not None:
            logps = sequence_logps(reference, batch)
        else:
            inner = getattr(policy, "module", policy)  # DDP/FSDP wrappers
            with inner.disable_adapter() if hasattr(inner, "disable_adapter") \
                    else contextlib.nullcontext():
                logps = sequence_logps(policy, batch)
    return logps.chunk(2)


def dpo_terms(chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor,
              ref_rejected: torch.Tensor, beta: float) -> dict[str, torch.Tensor]:
    """Per-pair DPO loss ``-log sigmoid(beta * (Δchosen - Δrejected))`` and implicit rewards."""
    chosen_rewards = beta * (chosen - ref_chosen)
    rejected_rewards = beta * (rejected - ref_rejected)
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards)
    return {"losses": losses, "chosen_rewards": chosen_rewards.detach(),
            "rejected_rewards": rejected_rewards.detach()}


def dpo_loss_sum(model: Any, reference: Any | None, batch: dict[str, torch.Tensor],
                 beta: float) -> tuple[torch.Tensor, int, dict[str, float]]:
    """Summed DPO loss over the batch's pairs, the pair count, and summed reward statistics."""
    chosen, rejected = sequence_logps(model, batch).chunk(2)
    ref_chosen, ref_rejected = reference_logps(model, reference, batch)
    terms = dpo_terms(chosen, rejected, ref_chosen.to(chosen), ref_rejected.to(chosen), beta)
    margin = terms["chosen_rewards"] - terms["rejected_rewards"]
    stats = {"rewards/chosen": float(terms["chosen_rewards"].sum()),
             "rewards/rejected": float(terms["rejected_rewards"].sum()),
             "rewards/margin": float(margin.sum()),
             "rewards/accuracy": float((margin > 0).float().sum())}
    return terms["losses"].sum(), chosen.numel(), stats
