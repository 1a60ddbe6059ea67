"""Python API behind ``forge train``: start a run, resume one, write its artifacts.

``start(spec)`` and ``resume(run)`` are what the CLI and the ``Trainer`` plugins call; under
``torchrun`` every rank calls them and rank 0 alone writes the run directory.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import torch

from forge_kernel.errors import ConfigError, ForgeError
from forge_plugin_train import checkpoint as ckpt
from forge_plugin_train.data import TrainData, file_hash
from forge_plugin_train.distributed import World, full_state, setup, unwrap, wrap
from forge_plugin_train.loop import Loop, Progress, steps_for
from forge_plugin_train.modeling import load_model, load_tokenizer, resolve_model, resolve_precision
from forge_plugin_train.runs import Run, truncate_metrics
from forge_plugin_train.spec import RunSpec

log = logging.getLogger("forge.train")


class Cancelled(ForgeError):
    """The run was stopped by SIGTERM / Ctrl-C; it is recorded as ``cancelled``."""


def environment(world: World) -> dict[str, Any]:
    """Versions and machine facts recorded with each run."""
    import peft
    import transformers

    return {"python": sys.version.split()[0], "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__,
            "platform": platform.platform(), "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(), "world_size": world.size,
            "device": str(world.device), "strategy": world.strategy}


def _shared_run(world: World, spec: RunSpec, run: Run | None) -> Run:
    """Rank 0 creates the run; the others learn its directory through a broadcast."""
    if run is None and world.main:
        run = Run.create(spec.name, {"method": spec.method, "seed": spec.seed,
                                     "parent_model": spec.model})
        (run.dir / "spec.yaml").write_text(_yaml(spec.to_dict()), encoding="utf-8")
    if world.size > 1:
        box = [str(run.dir) if run is not None else None]
        torch.distributed.broadcast_object_list(box, src=0)
        run = Run.load(box[0])
    return run


def _yaml(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def start(spec: RunSpec, run: Run | None = None, progress: bool | Progress = True,
          resume_from: Path | None = None) -> Run:
    """Run ``spec`` to completion (or failure) and return its :class:`Run`."""
    world = setup(spec)
    run = _shared_run(world, spec, run)
    torch.manual_seed(spec.seed)
    writer = run if world.main else None
    try:
        _execute(spec, world, run, writer, progress, resume_from)
    except KeyboardInterrupt:
        if writer:
            writer.set_state("cancelled", error="cancelled by signal")
        raise Cancelled(f"run {run.id} cancelled; continue it with "
                        f"`forge train --resume {run.id}`") from None
    except BaseException as exc:
        if writer:
            writer.set_state("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    return Run.load(str(run.dir))


def resume(ref: str, progress: bool | Progress = True) -> Run:
    """Continue run ``ref`` from its newest checkpoint (verified by checksum)."""
    run = Run.load(ref)
    if run.state in ("running", "checkpointing", "queued") and run.info.get("pid") != os.getpid():
        raise ConfigError(f"run {run.id} is still {run.state} (pid {run.info.get('pid')})")
    if run.state == "completed":
        raise ConfigError(f"run {run.id} already completed")
    spec = RunSpec.from_file(run.dir / "spec.yaml")
    latest = ckpt.latest(run.dir / "checkpoints")
    if latest is None:
        raise ckpt.CheckpointError(f"run {run.id} has no checkpoint to resume from "
                                   "(set checkpoint.every); start it again instead")
    ckpt.verify(latest)
    return start(spec, run=run, progress=progress, resume_from=latest)


def _raise_interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _execute(spec: RunSpec, world: World, run: Run, writer: Run | None,
             progress: bool | Progress, resume_from: Path | None) -> None:
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
    model_dir = resolve_model(spec.model)
    tokenizer = load_tokenizer(model_dir)
    train = TrainData(spec, tokenizer, "train")
    has_eval = spec.data.eval_path or spec.data.eval_fraction > 0
    evaluation = TrainData(spec, tokenizer, "eval") if has_eval else None
    total = steps_for(spec, train, world)
    model = load_model(spec, model_dir, world.device)
    reference = None
    if spec.method == "dpo" and spec.dpo.reference == "model" and not spec.uses_lora:
        reference = load_model(RunSpec.from_dict({**spec.to_dict(), "method": "sft"}),
                               model_dir, world.device).eval().requires_grad_(False)
    model = wrap(model, world)
    if writer:
        writer.set_state("running", total_steps=total, model_dir=str(model_dir),
                         dataset_hash=file_hash(spec.data.path), environment=environment(world),
                         train_examples=len(train),
                         eval_examples=len(evaluation) if evaluation else 0)
    loop = Loop(spec, world, model, train, evaluation, total, reference=reference,
                autocast=resolve_precision(spec.precision, world.device),
                checkpoints=run.dir / "checkpoints",
                on_metrics=writer.log_metrics if writer else (lambda r: None),
                on_state=(lambda s: writer.set_state(s, step=loop.step)) if writer
                else (lambda s: None))
    if resume_from is not None:
        loop.restore(resume_from)
        if writer:
            truncate_metrics(writer, loop.step)
            writer.set_state("running", resumed_from=str(resume_from), step=loop.step)
    bar = None
    callback = progress if callable(progress) else None
    if progress is True and world.main:
        from forge_plugin_train.progress import Bar

        bar = Bar(total, loop.step)
        callback = bar.update
    try:
        loop.run(callback)
    finally:
        if bar is not None:
            bar.close()
    final = save_final(loop, tokenizer, run.dir / "final", world)
    if writer:
        if spec.output:
            shutil.copytree(final, spec.output, dirs_exist_ok=True)
        writer.set_state("completed", step=loop.step, final=str(final),
                         best_eval_loss=None if loop.best == float("inf") else loop.best)


def save_final(loop: Loop, tokenizer: Any, out: Path, world: World) -> Path:
    """The adapter (PEFT format) or full weights (safetensors) plus the tokenizer."""
    weights, _ = full_state(loop.model, None, loop.trainable)
    if world.main:
        inner = unwrap(loop.model)
        tmp = out.with_name(out.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        # the gathered full state: under FSDP the module's own tensors are shards
        inner.save_pretrained(str(tmp), state_dict=weights, safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    if world.size > 1:
        torch.distributed.barrier()
    return out
