"""Checkpoints: trained tensors, optimizer/scheduler/RNG state and data position, checksummed.

A checkpoint is a directory ``step-NNNNNN`` written under a temporary name and renamed when
complete, so a SIGKILL mid-save leaves no half checkpoint behind. ``manifest.json`` lists the
sha256 of every file; :func:`load` verifies them and names the file that does not match.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from forge_kernel.errors import ForgeError

WEIGHTS = "trainable.safetensors"
STATE = "state.pt"
MANIFEST = "manifest.json"


class CheckpointError(ForgeError):
    """A checkpoint is missing, incomplete or corrupt (checksum mismatch)."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def rng_state() -> dict[str, Any]:
    """Every RNG a training step may draw from (dropout, shuffles)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`'s result."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(directory: Path, weights: dict[str, torch.Tensor], state: dict[str, Any],
         meta: dict[str, Any]) -> Path:
    """Write a checkpoint atomically; returns its directory."""
    tmp = directory.with_name(directory.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(tmp / WEIGHTS))
    torch.save(state, tmp / STATE)
    files = {name: _sha256(tmp / name) for name in (WEIGHTS, STATE)}
    (tmp / MANIFEST).write_text(json.dumps({"files": files, **meta}, indent=2, sort_keys=True),
                                encoding="utf-8")
    for name in (WEIGHTS, STATE, MANIFEST):  # durable before the rename makes it visible
        with (tmp / name).open("rb") as handle:
            os.fsync(handle.fileno())
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(tmp, directory)
    return directory


def verify(directory: Path) -> dict[str, Any]:
    """The manifest of a complete, uncorrupted checkpoint; :class:`CheckpointError` otherwise."""
    manifest_path = directory / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {directory}: {MANIFEST} is missing "
                              "(incomplete checkpoint)") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint {manifest_path}: corrupt manifest: {exc}") from None
    for name, expected in manifest.get("files", {}).items():
        path = directory / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint {directory}: file {name} is missing")
        actual = _sha256(path)
        if actual != expected:
            raise CheckpointError(f"checkpoint {path}: checksum mismatch (sha256 {actual[:12]}… "
                                  f"!= recorded {expected[:12]}…): the file is corrupt; "
                                  "delete this checkpoint to resume from an older one")
    return manifest


def load(directory: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """``(weights, state, manifest)`` of a verified checkpoint."""
    manifest = verify(directory)
    weights = load_file(str(directory / WEIGHTS))
    state = torch.load(directory / STATE, weights_only=False)
    return weights, state, manifest


def periodic(root: Path) -> list[Path]:
    """Complete periodic checkpoints, oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-")
                  and not p.name.endswith(".partial"))


def latest(root: Path) -> Path | None:
    """The newest periodic checkpoint, or None."""
    found = periodic(root)
    return found[-1] if found else None


def retain(root: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest periodic checkpoints (``best`` is separate)."""
    for old in periodic(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
