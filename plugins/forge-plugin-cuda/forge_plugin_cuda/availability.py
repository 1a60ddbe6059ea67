"""Whether the ``cuda`` backend can run here, and if not, exactly why.

Every check takes the ``torch`` module as an argument so the reasoning is unit-tested on a
machine without a GPU (tests pass a stand-in that reports an old driver, no device, ...).
The order matters: each reason is only reachable once the previous checks passed, so the
message names the first thing a user has to fix.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import Any

from forge_kernel.errors import ForgeError

MIN_CAPABILITY = (7, 0)
"""Triton (and bf16/fp16 tensor-core GEMMs worth having) need Volta or newer."""
MIN_FREE_BYTES = 256 * 1024 * 1024
"""Below this much free device memory not even the smallest model and its KV cache fit."""


class BackendUnavailable(ForgeError):
    """A GPU backend was selected but cannot run on this machine; the message says why.

    A :class:`~forge_kernel.errors.ForgeError`, so ``forge serve`` / ``forge run`` print it as
    one line and exit non-zero instead of falling back to another backend."""


def cuda_availability(index: int = 0, torch_module: Any = None) -> tuple[bool, str]:
    """``(True, "")`` when ``cuda:index`` is usable, else ``(False, reason)``.

    Reasons, in order: torch is a CPU-only build; the CUDA runtime cannot start (old driver,
    no driver); no device is visible; ``index`` is out of range; the device is older than
    compute capability 7.0; less than 256 MiB of its memory is free.
    """
    torch = torch_module
    if torch is None:
        try:
            import torch
        except ImportError as exc:  # pragma: no cover - torch is a dependency
            return False, f"torch cannot be imported ({exc})"
    if getattr(torch.version, "cuda", None) is None:
        return False, (f"torch {torch.__version__} is a CPU-only build (no CUDA support); "
                       f"install a CUDA build of the same torch version")
    if not isinstance(index, int) or index < 0:
        return False, f"--device must be a non-negative integer, got {index!r}"
    try:
        # init() raises with the driver's own words ("The NVIDIA driver on your system is too
        # old (found version 11040)..."), which is_available() would swallow.
        torch.cuda.init()
    except Exception as exc:  # noqa: BLE001 - every failure here is a reason to report
        message = " ".join(str(exc).split())
        if "driver" in message.lower() and "old" in message.lower():
            return False, f"the NVIDIA driver is too old for torch's CUDA {torch.version.cuda}: " \
                          f"{message}"
        if "no cuda gpus" in message.lower() or "no nvidia driver" in message.lower():
            return False, _no_device_reason(message)
        return False, f"the CUDA runtime failed to start: {message}"
    count = int(torch.cuda.device_count())
    if count == 0:
        return False, _no_device_reason("")
    if index >= count:
        return False, (f"--device {index} is out of range: {count} CUDA device(s) visible "
                       f"(valid: 0..{count - 1})")
    major, minor = torch.cuda.get_device_capability(index)
    if (major, minor) < MIN_CAPABILITY:
        name = torch.cuda.get_device_name(index)
        return False, (f"cuda:{index} ({name}) has compute capability {major}.{minor}; "
                       f"the cuda backend needs {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} or newer")
    try:
        free, total = torch.cuda.mem_get_info(index)
    except Exception as exc:  # noqa: BLE001 - e.g. the device is in exclusive mode elsewhere
        return False, f"cannot query memory of cuda:{index}: {' '.join(str(exc).split())}"
    if free < MIN_FREE_BYTES:
        return False, (f"out of memory: cuda:{index} has {free >> 20} MiB free of "
                       f"{total >> 20} MiB (at least {MIN_FREE_BYTES >> 20} MiB needed)")
    return True, ""


def cpu_only_torch_reason() -> str | None:
    """The "CPU-only build" reason, found without importing torch (``forge plugins`` lists
    availability and stays torch-free): torch's generated ``version.py`` says ``cuda = None``.
    ``None`` when torch has CUDA, is imported already, or the file cannot be read; then the
    full check (:func:`cuda_availability`) answers."""
    if "torch" in sys.modules:
        return None
    try:
        spec = importlib.util.find_spec("torch")
        locations = list(spec.submodule_search_locations or []) if spec else []
        text = (Path(locations[0]) / "version.py").read_text() if locations else ""
    except (OSError, ImportError, ValueError):
        return None
    cuda = re.search(r"^cuda\s*(?::[^=]*)?=\s*(.+?)\s*$", text, re.MULTILINE)
    version = re.search(r"^__version__\s*(?::[^=]*)?=\s*['\"](.+?)['\"]", text, re.MULTILINE)
    if cuda is None or cuda.group(1) != "None":
        return None
    shown = version.group(1) if version else "?"
    return (f"torch {shown} is a CPU-only build (no CUDA support); install a CUDA build of "
            f"the same torch version")


def _no_device_reason(detail: str) -> str:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    hint = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
    tail = f": {detail}" if detail else ""
    return f"no CUDA device is visible{hint}{tail}"

