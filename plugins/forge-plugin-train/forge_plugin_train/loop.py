"""The training loop: one optimizer step = ``grad_accum`` micro-batches on each of ``world``
ranks, the loss divided by the token (SFT) or pair (DPO) count of the *whole* step.

Dividing by the whole step's count (all-reduced before the forward passes) makes the gradient
that of one big batch: 2 ranks x batch 1 equals 1 rank x batch 2 equals batch 1 x accum 2, up to
float summation order. That is what the distributed test compares.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from forge_plugin_train import checkpoint as ckpt
from forge_plugin_train.data import IGNORE, TrainData
from forge_plugin_train.distributed import World, full_state, load_full_state
from forge_plugin_train.losses import dpo_loss_sum, sft_loss_sum
from forge_plugin_train.optim import build_optimizer, build_scheduler
from forge_plugin_train.spec import RunSpec

log = logging.getLogger("forge.train")
Progress = Callable[[int, int, dict[str, float]], None]


@dataclass(slots=True)
class Position:
    """Where the data stream is: ``consumed`` examples into ``epoch``."""

    epoch: int = 0
    consumed: int = 0


@dataclass(slots=True)
class Loop:
    """Everything one run's steps need; built by :mod:`forge_plugin_train.api`."""

    spec: RunSpec
    world: World
    model: torch.nn.Module
    train: TrainData
    eval: TrainData | None
    total_steps: int
    reference: torch.nn.Module | None = None
    autocast: torch.dtype | None = None
    on_metrics: Callable[[dict[str, Any]], None] = lambda record: None
    on_state: Callable[[str], None] = lambda state: None
    checkpoints: Any = None
    """Directory of the run's checkpoints (None: no checkpoints)."""
    step: int = 0
    position: Position = field(default_factory=Position)
    best: float = math.inf
    optimizer: Any = None
    scheduler: Any = None
    trainable: set[str] = field(default_factory=set)
    _live: Any = None

    def __post_init__(self) -> None:
        inner = getattr(self.model, "module", self.model)
        params = [p for p in inner.parameters() if p.requires_grad]
        self.trainable = {n for n, p in inner.named_parameters() if p.requires_grad}
        self.optimizer = build_optimizer(self.spec, params)
        self.scheduler = build_scheduler(self.spec, self.optimizer, self.total_steps)

    # ---- data ----------------------------------------------------------------------------

    def _stream(self) -> Iterator[dict[str, Any]]:
        """The live iterator at ``position``; rebuilt (and fast-forwarded) only after a resume."""
        key = (self.position.epoch, self.position.consumed)
        if self._live is None or self._live[0] != key:
            stream = self.train.epoch(self.position.epoch)
            for _ in itertools.islice(stream, self.position.consumed):
                pass
            self._live = (key, stream)
        return self._live[1]

    def _take(self, count: int) -> list[dict[str, Any]]:
        """The next ``count`` examples of the global stream (crossing epochs as needed)."""
        out: list[dict[str, Any]] = []
        while len(out) < count:
            stream = self._stream()
            got = 0
            for example in itertools.islice(stream, count - len(out)):
                out.append(example)
                got += 1
            if len(out) == count:
                self.position.consumed += got
                self._live = ((self.position.epoch, self.position.consumed), stream)
                break
            if got == 0 and self.position.consumed == 0:
                raise RuntimeError("the training data stream is empty")
            self.position = Position(self.position.epoch + 1, 0)
        return out

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.world.device.type, dtype=self.autocast)

    def _loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int, dict[str, float]]:
        batch = {k: v.to(self.world.device) for k, v in batch.items()}
        with self._autocast():
            if self.spec.method == "dpo":
                return dpo_loss_sum(self.model, self.reference, batch, self.spec.dpo.beta)
            loss, count = sft_loss_sum(self.model, batch)
            return loss, count, {}

    @staticmethod
    def _units(examples: list[dict[str, Any]], dpo: bool) -> int:
        if dpo:
            return len(examples)
        return sum(sum(1 for x in e["labels"][1:] if x != IGNORE) for e in examples)

    # ---- one step ------------------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        """One optimizer step; returns its metrics (identical on every rank)."""
        spec, world, dpo = self.spec, self.world, self.spec.method == "dpo"
        started = time.perf_counter()
        examples = self._take(spec.batch_size * spec.grad_accum * world.size)
        mine = examples[world.rank::world.size]
        micro = [mine[i:i + spec.batch_size] for i in range(0, len(mine), spec.batch_size)]
        units = max(1.0, world.sum([float(self._units(mine, dpo))])[0])
        self.model.train()
        loss_sum, tokens, stats = 0.0, 0, {}
        for i, chunk in enumerate(micro):
            batch = self.train.collate(chunk)
            tokens += int(batch["attention_mask"].sum())
            sync = i == len(micro) - 1 or not hasattr(self.model, "no_sync")
            with contextlib.nullcontext() if sync else self.model.no_sync():
                loss, _, extra = self._loss(batch)
                # DDP/FSDP average gradients over ranks: scale back up by world.size
                (loss * (world.size / units)).backward()
            loss_sum += float(loss.detach())
            for k, v in extra.items():
                stats[k] = stats.get(k, 0.0) + v
        grad_norm = 0.0
        if spec.optimizer.max_grad_norm > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad],
                spec.optimizer.max_grad_norm))
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        keys = sorted(stats)
        totals = world.sum([loss_sum, float(tokens)] + [stats[k] for k in keys])
        elapsed = max(time.perf_counter() - started, 1e-9)
        metrics = {"loss": totals[0] / units, "lr": lr, "grad_norm": grad_norm,
                   "tokens": totals[1], "tokens_per_s": totals[1] / elapsed,
                   "epoch": self.position.epoch + self.position.consumed / max(1, len(self.train))}
        for k, v in zip(keys, totals[2:], strict=True):
            metrics[k] = v / units  # pair means (DPO's unit count is the pair count)
        return metrics

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean loss (and DPO reward stats) over this rank's share of the eval split."""
        if self.eval is None:
            return {}
        self.model.eval()
        loss_sum, units, stats = 0.0, 0, {}
        size = self.spec.batch_size
        examples = list(self.eval.epoch(0))[self.world.rank::self.world.size]
        limit = self.spec.eval.max_batches or len(examples)
        for start in range(0, min(len(examples), limit * size), size):
            loss, count, extra = self._loss(self.eval.collate(examples[start:start + size]))
            loss_sum, units = loss_sum + float(loss), units + count
            for k, v in extra.items():
                stats[k] = stats.get(k, 0.0) + v
        keys = sorted(stats)
        totals = self.world.sum([loss_sum, float(units)] + [stats[k] for k in keys])
        if not totals[1]:
            return {}
        out = {"eval_loss": totals[0] / totals[1]}
        out.update({f"eval_{k}": v / totals[1] for k, v in zip(keys, totals[2:], strict=True)})
        return out

    # ---- checkpoints ---------------------------------------------------------------------

    def save_checkpoint(self, name: str) -> None:
        """Every rank gathers (FSDP needs all of them); rank 0 writes."""
        self.on_state("checkpointing")
        weights, optim = full_state(self.model, self.optimizer, self.trainable)
        if self.world.main:
            state = {"optimizer": optim, "scheduler": self.scheduler.state_dict(),
                     "rng": ckpt.rng_state(), "step": self.step, "best": self.best,
                     "position": [self.position.epoch, self.position.consumed]}
            ckpt.save(self.checkpoints / name, weights, state,
                      {"step": self.step, "world_size": self.world.size})
            if name.startswith("step-"):
                ckpt.retain(self.checkpoints, self.spec.checkpoint.keep)
        if self.world.size > 1:
            torch.distributed.barrier()
        self.on_state("running")

    def restore(self, directory: Any) -> None:
        """Continue from a checkpoint (every rank reads the same verified files)."""
        weights, state, _ = ckpt.load(directory)
        load_full_state(self.model, self.optimizer, weights, state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        ckpt.set_rng_state(state["rng"])
        self.step, self.best = state["step"], state["best"]
        self.position = Position(*state["position"])

    # ---- the run -------------------------------------------------------------------------

    def run(self, progress: Progress | None = None) -> None:
        """Steps until ``total_steps``, logging, evaluating and checkpointing on schedule."""
        spec = self.spec
        every_ckpt, every_eval = spec.checkpoint.every, spec.eval.every
        while self.step < self.total_steps:
            metrics = self.train_step()
            if every_eval and self.step % every_eval == 0 or self.step == self.total_steps:
                metrics.update(self.evaluate())
            if self.step % spec.log_every == 0 or self.step == self.total_steps:
                self.on_metrics({"step": self.step, **metrics})
            if progress is not None:
                progress(self.step, self.total_steps, metrics)
            improved = metrics.get("eval_loss", math.inf) < self.best
            if improved:
                self.best = metrics["eval_loss"]
            if self.checkpoints is not None and every_ckpt and self.step % every_ckpt == 0:
                self.save_checkpoint(f"step-{self.step:06d}")
            if self.checkpoints is not None and improved and spec.checkpoint.keep_best:
                self.save_checkpoint("best")


def steps_for(spec: RunSpec, data: TrainData, world: World) -> int:
    """Optimizer steps of the run (``epochs`` converted with the global batch size)."""
    if spec.epochs is None:
        return spec.steps
    per_step = spec.batch_size * spec.grad_accum * world.size
    return max(1, math.ceil(spec.epochs * len(data) / per_step))

