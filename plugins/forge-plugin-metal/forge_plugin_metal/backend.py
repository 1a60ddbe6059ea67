"""The ``metal`` backend: fp16 weights on the Apple GPU through torch MPS."""

from __future__ import annotations

import torch
from forge_plugin_cuda.availability import BackendUnavailable
from forge_plugin_cuda.device_backend import TorchDeviceBackend

from forge_plugin_metal.availability import mps_availability


class MetalBackend(TorchDeviceBackend):
    """Weights dequantized at load to ``dtype`` (default float16; bfloat16 needs macOS 14+)
    on ``mps``; products by ``F.linear`` (Metal Performance Shaders). Use it with the
    ``device-paged`` KV cache (``--kv-cache device-paged``): attention is SDPA over the
    gathered blocks. Raises :class:`BackendUnavailable` with the reason off macOS."""

    name = "metal"
    default_dtype = torch.float16

    def __init__(self, threads: int | None = None, dtype: str | torch.dtype | None = None) -> None:
        ok, reason = mps_availability()
        if not ok:
            raise BackendUnavailable(f"backend 'metal' is unavailable: {reason}")
        super().__init__(device="mps", dtype=dtype, threads=threads)

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        return mps_availability()
