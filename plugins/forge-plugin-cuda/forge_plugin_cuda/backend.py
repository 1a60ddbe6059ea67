"""The ``cuda`` backend: bf16 (or fp16) weights on one NVIDIA GPU, cuBLAS GEMMs via torch."""

from __future__ import annotations

import torch

from forge_plugin_cuda import settings
from forge_plugin_cuda.availability import BackendUnavailable, cuda_availability
from forge_plugin_cuda.device_backend import TorchDeviceBackend


def resolve_device_index(device: int | str | None) -> int:
    """``cuda:N`` / ``N`` / ``None`` (the ``[cuda] device`` setting) -> ``N``."""
    if device is None:
        return int(settings.current().device)
    if isinstance(device, int) and not isinstance(device, bool):
        return device
    text = str(device).strip().lower().removeprefix("cuda:")
    if not text.isdigit():
        raise ValueError(f"cuda backend: device must be an index or 'cuda:N', got {device!r}")
    return int(text)


class CudaBackend(TorchDeviceBackend):
    """``cuda:N`` with weights in ``dtype`` (default bfloat16; ``float16`` for pre-Ampere GPUs).

    Construction fails with :class:`BackendUnavailable` (never a silent fallback) when the
    device cannot be used; :meth:`availability` gives the same reason without raising.
    """

    name = "cuda"
    preferred_kv_cache = "device-paged"
    """Blocks and per-step block tables on the GPU (the builder's default for this backend)."""

    def __init__(self, threads: int | None = None, device: int | str | None = None,
                 dtype: str | torch.dtype | None = None) -> None:
        index = resolve_device_index(device)
        ok, reason = cuda_availability(index)
        if not ok:
            raise BackendUnavailable(f"backend 'cuda' is unavailable: {reason}")
        dtype = dtype if dtype is not None else settings.current().dtype
        super().__init__(device=f"cuda:{index}", dtype=dtype, threads=threads)
        if self.compute_dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            raise BackendUnavailable(f"backend 'cuda': cuda:{index} has no bfloat16 support; "
                                     f"set [cuda] dtype = \"float16\"")
        torch.cuda.set_device(index)
        self.index = index

    @classmethod
    def availability(cls, device: int | str | None = None) -> tuple[bool, str]:
        """Whether ``device`` (default: the ``[cuda] device`` setting) is usable."""
        try:
            index = resolve_device_index(device)
        except ValueError as exc:
            return False, str(exc)
        return cuda_availability(index)

    def describe(self) -> str:
        name = torch.cuda.get_device_name(self.index)
        return f"{super().describe()} [{name}]"
