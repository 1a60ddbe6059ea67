"""Whether torch's Metal (MPS) device can run the ``metal`` backend here, and if not, why."""

from __future__ import annotations

import platform
from typing import Any


def off_macos_reason() -> str | None:
    """The reason MPS cannot exist here, found without importing torch (``forge plugins``
    stays torch-free): this is not macOS. ``None`` on macOS (then ask torch)."""
    system = platform.system()
    if system == "Darwin":
        return None
    return f"Metal (MPS) exists only on macOS; this is {system}"


def mps_availability(torch_module: Any = None) -> tuple[bool, str]:
    """``(True, "")`` when the MPS device is usable, else ``(False, reason)``: not macOS, a
    torch build without MPS, or no MPS device (macOS too old, no Metal GPU)."""
    torch = torch_module
    if torch is None:
        import torch
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_built():
        system = platform.system()
        where = "" if system == "Darwin" else f" (this is {system}; MPS exists only on macOS)"
        return False, f"torch {torch.__version__} was built without Metal (MPS) support{where}"
    if not mps.is_available():
        return False, ("torch supports Metal (MPS) but no MPS device is available (needs "
                       "macOS 12.3+ on Apple silicon or a Metal-capable GPU)")
    return True, ""
