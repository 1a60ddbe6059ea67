"""Optimizer and learning-rate schedule from the spec."""

from __future__ import annotations

import math
from typing import Any

import torch

from forge_plugin_train.spec import RunSpec


def build_optimizer(spec: RunSpec, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """``adamw`` / ``adam`` / ``sgd`` over ``params`` with the spec's hyper-parameters."""
    opt = spec.optimizer
    if opt.name == "sgd":
        return torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum,
                               weight_decay=opt.weight_decay)
    cls = torch.optim.AdamW if opt.name == "adamw" else torch.optim.Adam
    # foreach=False: the same per-tensor kernels whatever the grouping, so a resumed run and
    # a sharded run add in the same order as an uninterrupted one
    return cls(params, lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps,
               weight_decay=opt.weight_decay, foreach=False)


def lr_factor(spec: RunSpec, step: int, total: int) -> float:
    """Multiplier of the base LR at optimizer step ``step`` (0-based) of ``total``."""
    sched = spec.schedule
    if sched.warmup_steps and step < sched.warmup_steps:
        return (step + 1) / sched.warmup_steps
    if sched.name == "constant":
        return 1.0
    span = max(1, total - sched.warmup_steps)
    progress = min(1.0, (step - sched.warmup_steps) / span)
    floor = sched.min_lr_ratio
    if sched.name == "linear":
        return floor + (1.0 - floor) * (1.0 - progress)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(spec: RunSpec, optimizer: torch.optim.Optimizer, total: int) -> Any:
    """A ``LambdaLR`` following :func:`lr_factor` (its state dict is the step count)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(spec, s, total))
