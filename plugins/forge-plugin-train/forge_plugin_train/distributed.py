"""torch.distributed glue: process group from ``torchrun``'s environment, DDP/FSDP wrapping,
and full (unsharded) state dicts for checkpoints. No communication layer of our own."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from forge_kernel.errors import ConfigError
from forge_plugin_train.spec import RunSpec


@dataclass(slots=True)
class World:
    """This process's place: ``rank`` of ``size``, its device, and the strategy in use."""

    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")
    strategy: str = "none"

    @property
    def main(self) -> bool:
        """Rank 0 writes files and draws the progress bar."""
        return self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks (identity in one process)."""
        if self.size == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.tolist()


def setup(spec: RunSpec) -> World:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE``/``RANK`` env)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    strategy = spec.distributed.strategy
    if strategy != "none" and size == 1 and "RANK" not in os.environ:
        raise ConfigError(f"distributed.strategy {strategy!r} needs torchrun "
                          "(torchrun --nproc-per-node N -m forge_plugin_train.launch ...)")
    if size == 1:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return World(device=device, strategy="none")
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = spec.distributed.backend
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    device = torch.device("cuda", local) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return World(rank, size, device, "ddp" if strategy == "none" else strategy)


def wrap(model: torch.nn.Module, world: World) -> torch.nn.Module:
    """DDP (replicated, gradients all-reduced) or FSDP2 ``fully_shard`` (parameters, gradients
    and optimizer state sharded; ``reshard_after_forward=False`` keeps parameters gathered
    between forward and backward, ZeRO-2-like)."""
    if world.size == 1:
        return model
    if world.strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for layer in _layers(model):
            fully_shard(layer, reshard_after_forward=False)
        fully_shard(model, reshard_after_forward=False)
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[world.device.index]
                                   if world.device.type == "cuda" else None)


def _layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > 1:
            return list(module)
    return []


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP wrapper (FSDP2 shards in place: nothing to unwrap)."""
    return getattr(model, "module", model)


def full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
               names: set[str]) -> tuple[dict[str, torch.Tensor], Any]:
    """Unsharded trainable tensors (``names``) and optimizer state, on CPU, keyed by name."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    inner = unwrap(model)
    weights = {k: v for k, v in get_model_state_dict(inner, options=options).items()
               if k in names}
    optim = (get_optimizer_state_dict(inner, optimizer, options=options)
             if optimizer is not None else None)
    return weights, optim


def load_full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    weights: dict[str, torch.Tensor], optim: Any) -> None:
    """Inverse of :func:`full_state` (every rank reads the same checkpoint files)."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    inner = unwrap(model)
    set_model_state_dict(inner, weights,
                         options=StateDictOptions(full_state_dict=True, strict=False))
    if optimizer is not None and optim is not None:
        set_optimizer_state_dict(inner, optimizer, optim,
                                 options=StateDictOptions(full_state_dict=True))
